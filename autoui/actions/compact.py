"""The compact action format: as few tokens as possible, lossless to 1/1000 of the screen.

    tap Y X                 Y, X = round(v * 1000), integers 0..1000, (y x) order like AITW
    swipe Y1 X1 Y2 X2       exact touch and lift (drags keep their end points)
    scroll up|down|left|right   shorthand accepted on input: Auto-UI's fixed scroll points
    type TEXT               the rest of the line; "\\" "\n" and ";" are escaped with a backslash
    back | home | enter | done | impossible

With a plan (the current and next action types) in front, separated by " ; ":

    point type enter ; tap 219 502

Plan words: point (DUAL_POINT), type, back, home, enter, done, impossible.
"""
from __future__ import annotations

import re

from autoui.actions.space import Action, ActionError, ActionParseError, ActionType

PLAN_WORDS: dict[ActionType, str] = {
    ActionType.DUAL_POINT: "point",
    ActionType.TYPE: "type",
    ActionType.PRESS_BACK: "back",
    ActionType.PRESS_HOME: "home",
    ActionType.PRESS_ENTER: "enter",
    ActionType.STATUS_TASK_COMPLETE: "done",
    ActionType.STATUS_TASK_IMPOSSIBLE: "impossible",
}
_PLAN_TYPES = {w: t for t, w in PLAN_WORDS.items()}
_SIMPLE = {"back": Action.back, "home": Action.home, "enter": Action.enter,
           "done": Action.complete, "impossible": Action.impossible}
_SIMPLE_WORD = {ActionType.PRESS_BACK: "back", ActionType.PRESS_HOME: "home", ActionType.PRESS_ENTER: "enter",
                ActionType.STATUS_TASK_COMPLETE: "done", ActionType.STATUS_TASK_IMPOSSIBLE: "impossible"}
_INT = re.compile(r"\d{1,4}")
_ESCAPES = {"\\": "\\\\", "\n": "\\n", ";": "\\;"}
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)
_SEP = re.compile(r"(?<!\\);")  # the plan separator: a ";" not escaped


def _coord(v: float) -> str:
    return str(int(round(v * 1000)))


def escape_text(text: str) -> str:
    return "".join(_ESCAPES.get(c, c) for c in text)


def unescape_text(text: str) -> str:
    return _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def format_decision(action: Action) -> str:
    """The action part of the compact format."""
    if action.is_tap:
        y, x = action.touch_yx
        return f"tap {_coord(y)} {_coord(x)}"
    if action.is_swipe:
        (y0, x0), (y1, x1) = action.touch_yx, action.lift_yx
        return f"swipe {_coord(y0)} {_coord(x0)} {_coord(y1)} {_coord(x1)}"
    if action.action_type == ActionType.TYPE:
        return f"type {escape_text(action.typed_text)}"
    return _SIMPLE_WORD[action.action_type]


def format_compact(action: Action, plan: tuple[ActionType, ...] | list[ActionType] | None = None) -> str:
    """Render `action` in the compact format, with the plan prefix when a plan is given."""
    decision = format_decision(action)
    if plan is None:
        return decision
    words = " ".join(PLAN_WORDS[ActionType.from_value(t)] for t in plan)
    return f"{words} ; {decision}"


def _numbers(parts: list[str], n: int, text: str) -> list[float]:
    if len(parts) != n or not all(_INT.fullmatch(p) for p in parts):
        raise ActionParseError(f"expected {n} integer coordinates 0..1000", text)
    values = [int(p) for p in parts]
    if any(v > 1000 for v in values):
        raise ActionParseError("coordinate above 1000", text)
    return [v / 1000 for v in values]


def _parse_decision(decision: str, text: str) -> Action:
    head, _, rest = decision.partition(" ")
    if head == "type":
        return Action.type(unescape_text(rest))
    parts = rest.split()
    if head == "tap":
        y, x = _numbers(parts, 2, text)
        return Action.tap(y, x)
    if head == "swipe":
        y0, x0, y1, x1 = _numbers(parts, 4, text)
        return Action.swipe((y0, x0), (y1, x1))
    if head == "scroll" and len(parts) == 1:
        return Action.scroll(parts[0])
    if head in _SIMPLE and not parts:
        return _SIMPLE[head]()
    raise ActionParseError("not a compact action", text)


def _parse_plan(words: str, text: str) -> tuple[ActionType, ...]:
    try:
        return tuple(_PLAN_TYPES[w] for w in words.split())
    except KeyError as exc:
        raise ActionParseError(f"unknown plan word {exc.args[0]!r}", text) from None


def parse_compact(text: str):
    """Parse compact text (with or without a plan) into a ParsedAction."""
    from autoui.actions.parsed import ParsedAction

    if not isinstance(text, str):
        raise ActionParseError("action text must be a string", repr(text))
    body = text.strip()
    plan = None
    sep = _SEP.search(body)
    if sep is not None:
        plan = _parse_plan(body[: sep.start()], text)
        body = body[sep.end():].lstrip(" ")
    if not body:
        raise ActionParseError("empty action", text)
    try:
        action = _parse_decision(body, text)
    except ActionError as exc:
        raise ActionParseError(f"invalid action ({exc})", text) from None
    return ParsedAction(action=action, plan=plan, fmt="compact")
