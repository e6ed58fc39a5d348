"""Visible DOM elements with boxes normalized to the observation.

One JS function lists the visible elements of a page inside a CSS-pixel region (the part
of the page the observation shows). Scripted experts use it to find what to click, and
demonstrations use it for AITW's annotation boxes (the action-matching metric needs
them). The learned agent never sees this: it gets pixels and the goal only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Runs in the page. Args: [selector, [left, top, width, height] CSS px, leavesOnly, maxText].
# Boxes are clipped to the region; text is what a reader sees: a control's value or
# placeholder, aria-label, alt/title, else the rendered text (innerText; textContent for SVG).
ELEMENTS_JS = r"""
([selector, region, leavesOnly, maxText]) => {
  const [rl, rt, rw, rh] = region;
  const CONTROLS = new Set(['INPUT', 'TEXTAREA', 'SELECT', 'BUTTON', 'A', 'IMG', 'SVG', 'CANVAS', 'LABEL']);
  const squash = (s) => (s || '').replace(/\s+/g, ' ').trim().slice(0, maxText);
  const textOf = (el) => {
    const tag = el.tagName.toUpperCase();
    if (tag === 'INPUT' || tag === 'TEXTAREA') {
      const t = (el.type || '').toLowerCase();
      if (t !== 'checkbox' && t !== 'radio') return squash(el.value || el.placeholder || el.getAttribute('aria-label'));
    }
    if (tag === 'SELECT') return squash(el.selectedIndex >= 0 ? el.options[el.selectedIndex].text : '');
    const own = el.getAttribute('aria-label') || el.getAttribute('alt');
    if (own) return squash(own);
    const inner = el.innerText !== undefined ? el.innerText : el.textContent;
    return squash(inner || el.getAttribute('title'));
  };
  const ownTexts = (el) => Array.from(el.childNodes).filter((n) => n.nodeType === 3 && n.textContent.trim());
  const isControl = (el) => {
    const tag = el.tagName.toUpperCase();  // an SVG with shapes inside is a canvas, not a control
    return CONTROLS.has(tag) && !(tag === 'SVG' && el.children.length > 0);
  };
  const isLeaf = (el) => isControl(el) || el.children.length === 0 || ownTexts(el).length > 0;
  const out = [];
  const push = (el, r, text) => {
    const left = Math.max(r.left, rl), top = Math.max(r.top, rt);
    const right = Math.min(r.right, rl + rw), bottom = Math.min(r.bottom, rt + rh);
    if (right <= left || bottom <= top) return;
    const attrs = {};
    for (const a of el.attributes) attrs[a.name] = a.value.slice(0, maxText);
    if ('value' in el && typeof el.value === 'string') attrs['value'] = el.value.slice(0, maxText);
    if ('checked' in el) attrs['checked'] = el.checked ? 'true' : 'false';
    out.push({
      y: (top - rt) / rh, x: (left - rl) / rw, height: (bottom - top) / rh, width: (right - left) / rw,
      text: text, tag: el.tagName.toLowerCase(), attrs: attrs,
    });
  };
  for (const el of document.querySelectorAll(selector)) {
    const st = getComputedStyle(el);
    if (st.display === 'none' || st.visibility === 'hidden' || parseFloat(st.opacity) === 0) continue;
    if (leavesOnly && !isLeaf(el)) continue;
    const texts = leavesOnly && !isControl(el) ? ownTexts(el) : [];
    if (texts.length === 0) {
      const r = el.getBoundingClientRect(), text = textOf(el);
      // a blank panel (an overlay, a backdrop) is not something OCR or icon detection reports
      const blank = leavesOnly && !isControl(el) && !text && r.width * r.height > 0.25 * rw * rh;
      if (!blank) push(el, r, text);
      continue;
    }
    // text in a non-control element: one box per rendered line of each text run, as OCR reports
    // it (the element's own box can span the screen, and AITW's metric grows every box 2.4x)
    for (const node of texts) {
      const range = document.createRange();
      range.selectNodeContents(node);
      for (const r of range.getClientRects()) push(el, r, squash(node.textContent));
    }
  }
  return out;
}
"""


@dataclass(frozen=True)
class UIElement:
    """A visible element; the box (y, x, height, width) is normalized to the observation."""

    y: float
    x: float
    height: float
    width: float
    text: str
    tag: str
    ui_type: str
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def center(self) -> tuple[float, float]:
        """The box centre as normalized (y, x), ready for `Action.tap(*element.center)`."""
        return (self.y + self.height / 2, self.x + self.width / 2)

    @property
    def box(self) -> tuple[float, float, float, float]:
        """AITW's annotation box order: (y, x, height, width)."""
        return (self.y, self.x, self.height, self.width)


def ui_type_of(tag: str, text: str) -> str:
    """AITW's element type: "TEXT" for text-bearing elements, else "ICON_<TAG>"."""
    return "TEXT" if text else f"ICON_{tag.upper()}"


def list_elements(
    page: Any, region: tuple[float, float, float, float], selector: str = "*",
    leaves_only: bool = False, max_text: int = 200,
) -> list[UIElement]:
    """Visible elements matching `selector` inside `region` = (left, top, width, height) CSS px.

    `leaves_only` keeps what OCR and icon detection would report (AITW's annotations):
    controls and childless elements with their boxes, and for other elements with text of
    their own, one box per rendered line of that text (a dialog's or the goal banner's box
    would cover most of the screen, and AITW's metric grows each box 2.4x). An SVG with
    shapes inside reports its shapes, not itself; blank panels over a quarter of the region
    (overlays, backdrops) are left out.
    """
    if region[2] <= 0 or region[3] <= 0:
        raise ValueError(f"region width and height must be positive, got {region}")
    rows = page.evaluate(ELEMENTS_JS, [selector, list(region), leaves_only, max_text])
    return [
        UIElement(r["y"], r["x"], r["height"], r["width"], r["text"], r["tag"], ui_type_of(r["tag"], r["text"]), r["attrs"])
        for r in rows
    ]


def annotations(elements: list[UIElement]) -> tuple[list[tuple[float, float, float, float]], list[str], list[str]]:
    """AITW annotation fields from elements: (boxes as (y, x, h, w), texts, ui_types)."""
    return [e.box for e in elements], [e.text for e in elements], [e.ui_type for e in elements]
