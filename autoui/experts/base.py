"""The base of every scripted MiniWoB++ expert: goal parsing, element lookup and taps.

An expert is a closed-loop policy: each `act` reads the page's *current* state (privileged
DOM access through `env.evaluate`) and returns one user-level action in the project's action
space: a tap at a visible point of an element, or typed text for the focused field. Experts
never set page state from JavaScript; they only look.

Points are found in the browser: for every client rectangle of a candidate element the
expert tries the centre and then a grid of points, and keeps the first one where
`document.elementFromPoint` hits that element (or a descendant), so half-covered buttons,
elements outside the 160x210 task area and hidden tab panels are handled in one place.
"""
from __future__ import annotations

import logging
import re
from typing import Any, ClassVar, Sequence

from autoui.actions import Action

logger = logging.getLogger("autoui.experts")

TASK_WIDTH, TASK_HEIGHT = 160, 210
"""The MiniWoB++ task area in CSS pixels (top-left of the page); taps must land inside it."""


class ExpertError(RuntimeError):
    """An expert cannot go on: the page is not in a state its script understands."""


class GoalParseError(ExpertError, ValueError):
    """The goal text does not match what the task's expert expects. `.goal` holds it."""

    def __init__(self, task: str, goal: str, expected: str):
        super().__init__(f"{task}: cannot parse goal {goal!r} (expected {expected})")
        self.task = task
        self.goal = goal


# One JS function serves every lookup: candidates are filtered by selector, exact text and
# index, and the first point that really hits the element inside the task area is returned.
_POINT_JS = """
(arg) => {
  const W = arg.width, H = arg.height;
  const norm = (s) => (s || '').replace(/\\s+/g, ' ').trim();
  let els = Array.from(document.querySelectorAll(arg.selector));
  if (arg.text !== null) els = els.filter((e) => norm(e.textContent) === arg.text);
  if (arg.index !== null) els = els.slice(arg.index, arg.index + 1);
  const fracs = [0.5, 0.35, 0.65, 0.2, 0.8, 0.1, 0.9];
  for (const el of els) {
    for (const r of Array.from(el.getClientRects())) {
      const x0 = Math.max(r.left, 0), x1 = Math.min(r.right, W);
      const y0 = Math.max(r.top, 0), y1 = Math.min(r.bottom, H);
      if (x1 - x0 < 1 || y1 - y0 < 1) continue;
      for (const fy of fracs) {
        for (const fx of fracs) {
          const x = x0 + (x1 - x0) * fx, y = y0 + (y1 - y0) * fy;
          const hit = document.elementFromPoint(x, y);
          if (hit && (hit === el || el.contains(hit))) return [x, y];
        }
      }
    }
  }
  return null;
}
"""


def find_point(env: Any, selector: str, *, text: str | None = None, index: int | None = None) -> tuple[float, float] | None:
    """Normalized (y, x) of a visible, uncovered point of the first matching element, or None.

    `text` keeps only elements whose whitespace-collapsed textContent equals it; `index`
    picks one element out of the selector's matches (after the text filter).
    """
    arg = {"selector": selector, "text": text, "index": index, "width": TASK_WIDTH, "height": TASK_HEIGHT}
    point = env.evaluate(_POINT_JS, arg)
    if point is None:
        return None
    css_x, css_y = point
    return env.to_normalized(css_x, css_y)


class Expert:
    """A scripted policy for one MiniWoB++ task (one instance per environment).

    Subclasses set `tasks`, implement `parse_goal` (store what the goal asks for, raise
    GoalParseError when it does not fit) and `next_action` (read the page, return one Action).
    """

    tasks: ClassVar[tuple[str, ...]] = ()

    def __init__(self, env: Any):
        self.env = env
        self.goal = ""
        self.steps = 0

    @property
    def task(self) -> str:
        """The task this expert is acting on (the environment's current task)."""
        return str(self.env.task)

    def reset(self, goal: str) -> None:
        """Start a new episode with this goal text."""
        self.goal = goal
        self.steps = 0
        self.parse_goal(goal)

    def act(self, obs: Any = None, history: Sequence[Action] = ()) -> Action:
        """The next action for the page as it is now."""
        self.settle()
        action = self.next_action()
        self.steps += 1
        logger.debug("%s step %d: %s", self.task, self.steps, action)
        return action

    # -- for subclasses ------------------------------------------------------------
    def parse_goal(self, goal: str) -> None:
        """Read what the goal asks for; the default needs nothing from it."""

    def next_action(self) -> Action:
        raise NotImplementedError

    def match(self, pattern: str, expected: str) -> re.Match[str]:
        """`re.fullmatch` the goal (case-sensitive, surrounding spaces ignored) or raise GoalParseError."""
        m = re.fullmatch(pattern, self.goal.strip())
        if m is None:
            raise GoalParseError(self.task, self.goal, expected)
        return m

    def settle(self) -> None:
        """Wait for running jQuery animations, as a person waits for a panel to stop moving."""
        self.env.evaluate(
            """() => new Promise((resolve) => {
                 const t0 = Date.now();
                 const poll = () => {
                   const busy = window.jQuery && window.jQuery(':animated').length > 0;
                   if (!busy || Date.now() - t0 > 2000) resolve(); else setTimeout(poll, 20);
                 };
                 poll();
               })"""
        )

    def js(self, script: str, arg: Any = None) -> Any:
        """Evaluate a JavaScript expression/function on the page (reading state only)."""
        return self.env.evaluate(script, arg)

    def point(self, selector: str, *, text: str | None = None, index: int | None = None) -> tuple[float, float] | None:
        """See `find_point`."""
        return find_point(self.env, selector, text=text, index=index)

    def tap(self, selector: str, *, text: str | None = None, index: int | None = None) -> Action:
        """A tap on a visible point of the matching element; ExpertError when there is none."""
        yx = self.point(selector, text=text, index=index)
        if yx is None:
            what = selector + (f" with text {text!r}" if text is not None else "") + (f" #{index}" if index is not None else "")
            raise ExpertError(f"{self.task}: no visible element {what} (goal {self.goal!r})")
        return Action.tap(*yx)

    def field_value(self, selector: str) -> str:
        """The current value of an input/textarea."""
        value = self.js("(s) => { const e = document.querySelector(s); return e ? e.value : null; }", selector)
        if value is None:
            raise ExpertError(f"{self.task}: no field {selector!r} on the page")
        return str(value)

    def is_focused(self, selector: str) -> bool:
        """Whether the element matching `selector` has the keyboard focus."""
        return bool(self.js("(s) => document.activeElement === document.querySelector(s)", selector))

    def fill(self, selector: str, text: str) -> Action | None:
        """The next action that brings field `selector` to hold `text`; None once it does.

        Taps the field to focus it, then types what is missing. A field holding text that is
        not a prefix of the target cannot be repaired with taps and typing: ExpertError.
        """
        value = self.field_value(selector)
        if value == text:
            return None
        if not text.startswith(value):
            raise ExpertError(f"{self.task}: field {selector} holds {value!r}, which is no prefix of {text!r}")
        if not self.is_focused(selector):
            return self.tap(selector)
        return Action.type(text[len(value):])
