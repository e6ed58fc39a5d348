"""Experts for tasks about what is drawn: grid points, shapes, colours and a file tree."""
from __future__ import annotations

from autoui.actions import Action
from autoui.experts import register
from autoui.experts.base import Expert, ExpertError

# What a drawn SVG element is, read in the page: [tag-derived kind, text, fill, size class].
_SHAPES_JS = """
() => Array.from(document.querySelectorAll('#area_svg > *')).map((e) => {
  const tag = e.tagName.toLowerCase();
  const b = e.getBBox();
  let kind = {rect: 'rectangle', circle: 'circle', polygon: 'triangle'}[tag] || null;
  let text = '';
  if (tag === 'text') {
    text = e.textContent;
    kind = /^[0-9]$/.test(text) ? 'digit' : 'letter';
  }
  const size = tag === 'text' ? parseFloat(e.getAttribute('font-size')) : Math.max(b.width, b.height);
  return [kind, text, e.getAttribute('fill'), size];
})
"""

_SHAPE_NAMES = ("circle", "rectangle", "triangle")
_TYPE_NAMES = ("letter", "digit", "shape")
# genGrid draws a large item at 20 px and a small one at 10 px (font size or side length).
_LARGE_MIN_SIZE = 15.0


@register
class GridCoordinate(Expert):
    """grid-coordinate: 'Click on the grid coordinate (1,-2).'"""

    tasks = ("grid-coordinate",)

    def parse_goal(self, goal: str) -> None:
        m = self.match(r"Click on the grid coordinate \((-?\d),\s*(-?\d)\)\.", "'Click on the grid coordinate (x,y).'")
        self.circle_id = f"({int(m[1])},{int(m[2])})"

    def next_action(self) -> Action:
        return self.tap(f'circle[id="{self.circle_id}"]')


@register
class IdentifyShape(Expert):
    """identify-shape: 'Click the button that best describes the figure below.'"""

    tasks = ("identify-shape",)

    def next_action(self) -> Action:
        drawn = self.js(_SHAPES_JS)
        if len(drawn) != 1 or drawn[0][0] is None:
            raise ExpertError(f"{self.task}: expected one figure, found {drawn!r}")
        kind = drawn[0][0]
        return self.tap(f'#area-buttons button[data-type="{kind}"]')


@register
class ClickShape(Expert):
    """click-shape: 'Click on a large red circle' / 'a small digit' / 'a blue item' / 'a 7'."""

    tasks = ("click-shape",)

    def parse_goal(self, goal: str) -> None:
        m = self.match(r"Click on a (?:(large|small) )?(?:([a-z]+) )?(\S+)", "'Click on a [large|small] [colour] <what>'")
        self.size, self.color, self.what = m[1] or "", m[2] or "", m[3]
        if self.color in _SHAPE_NAMES + _TYPE_NAMES + ("item",):
            raise ExpertError(f"{self.task}: colour slot holds a shape word in {goal!r}")

    def _matches(self, kind: str, text: str, fill: str, size: float) -> bool:
        if self.size and (size >= _LARGE_MIN_SIZE) != (self.size == "large"):
            return False
        if self.color and fill != self.color:
            return False
        what = self.what
        if what == "item":
            return True
        if what == "shape":
            return kind in _SHAPE_NAMES
        if what in _SHAPE_NAMES + ("letter", "digit"):
            return kind == what
        return text == what  # a single letter or digit, case-sensitive as drawn

    def next_action(self) -> Action:
        drawn = self.js(_SHAPES_JS)
        for i, (kind, text, fill, size) in enumerate(drawn):
            if self._matches(kind, text, fill, size):
                return self.tap("#area_svg > *", index=i)
        raise ExpertError(f"{self.task}: nothing drawn matches {self.goal!r}: {drawn!r}")


@register
class NavigateTree(Expert):
    """navigate-tree: 'Navigate through the file tree. Find and click on the folder or file named "X".'"""

    tasks = ("navigate-tree",)

    def parse_goal(self, goal: str) -> None:
        m = self.match(
            r'Navigate through the file tree\. Find and click on the folder or file named "([^"]+)"\.',
            "'... Find and click on the folder or file named \"X\".'",
        )
        self.name = m[1]

    def next_action(self) -> Action:
        if self.point("#tree span", text=self.name) is not None:
            return self.tap("#tree span", text=self.name)
        # Hidden in a collapsed folder: open the outermost closed folder on the way to it.
        index = self.js(
            """(name) => {
                 const spans = Array.from(document.querySelectorAll('#tree span'));
                 const target = spans.find((s) => s.textContent === name);
                 if (!target) return -1;
                 const chain = [];
                 for (let li = target.parentElement.parentElement.closest('li'); li; li = li.parentElement.closest('li')) {
                   chain.unshift(li);
                 }
                 const closed = chain.find((li) => li.classList.contains('expandable'));
                 return closed ? spans.indexOf(closed.querySelector(':scope > span')) : -2;
               }""",
            self.name,
        )
        if index < 0:
            raise ExpertError(f"{self.task}: cannot reach {self.name!r} in the tree (code {index})")
        return self.tap("#tree span", index=index)
