"""Auto-UI's text format, byte-compatible with its published targets and predictions.

    Action Plan: [DUAL_POINT,TYPE,PRESS_ENTER] ; Action Decision: "action_type": "DUAL_POINT",
    "touch_point": "[0.2191, 0.5017]", "lift_point": "[0.2191, 0.5017]", "typed_text": ""

(on one line). Taps are rounded to 4 decimals with lift = touch; swipes are replaced by
fixed scroll points along their main axis; non-gestures carry "[-1.0, -1.0]"; quotes and
backslashes are stripped from typed text. Parsing uses regular expressions only.
"""
from __future__ import annotations

import re

from autoui.actions.space import (
    NO_POINT,
    SCROLL_POINTS,
    Action,
    ActionError,
    ActionParseError,
    ActionType,
)

_PLAN_RE = re.compile(r"Action Plan:\s*\[([^\]]*)\]")
_TYPE_RE = re.compile(r'"action_type"\s*:\s*"([^"]*)"')
_NUM = r"(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
_POINT_RE = {k: re.compile(rf'"{k}"\s*:\s*"\[\s*{_NUM}\s*,\s*{_NUM}\s*\]"') for k in ("touch_point", "lift_point")}
_TEXT_RE = re.compile(r'"typed_text"\s*:\s*"(.*)"', re.DOTALL)


def clean_text(text: str) -> str:
    """Auto-UI's typed-text cleaning: drop backslashes and both kinds of quotes."""
    return text.replace("\\", "").replace('"', "").replace("'", "")


def _point_text(yx: tuple[float, float]) -> str:
    # Python's str of a list of floats, as Auto-UI wrote it: "[0.2191, 0.5017]", "[-1.0, -1.0]"
    return str([float(yx[0]), float(yx[1])])


def format_decision(action: Action) -> str:
    """The `Action Decision` part alone (also what Auto-UI puts in the action history)."""
    touch = lift = NO_POINT
    if action.is_tap:
        touch = lift = (round(action.touch_yx[0], 4), round(action.touch_yx[1], 4))
    elif action.is_swipe:
        touch, lift = SCROLL_POINTS[action.scroll_direction]
    text = clean_text(action.typed_text)
    return (
        f'"action_type": "{action.action_type.name}", "touch_point": "{_point_text(touch)}", '
        f'"lift_point": "{_point_text(lift)}", "typed_text": "{text}"'
    )


def format_plan(plan: tuple[ActionType, ...] | list[ActionType]) -> str:
    return "[" + ",".join(ActionType.from_value(t).name for t in plan) + "]"


def format_autoui(action: Action, plan: tuple[ActionType, ...] | list[ActionType] | None = None) -> str:
    """Render `action` in Auto-UI's format, with the `Action Plan` prefix when a plan is given."""
    decision = format_decision(action)
    if plan is None:
        return decision
    return f"Action Plan: {format_plan(plan)} ; Action Decision: {decision}"


def _parse_plan(text: str) -> tuple[ActionType, ...] | None:
    m = _PLAN_RE.search(text)
    if m is None:
        if "Action Plan" in text:
            raise ActionParseError("malformed Action Plan", text)
        return None
    names = [n.strip() for n in m.group(1).split(",") if n.strip()]
    try:
        return tuple(ActionType.from_value(n) for n in names)
    except ActionError as exc:
        raise ActionParseError(f"bad action type in plan ({exc})", text) from None


def _parse_point(text: str, key: str) -> tuple[float, float]:
    m = _POINT_RE[key].search(text)
    if m is None:
        raise ActionParseError(f"missing or malformed {key}", text)
    return (float(m.group(1)), float(m.group(2)))


def parse_autoui(text: str):
    """Parse Auto-UI text (with or without the plan prefix) into a ParsedAction."""
    from autoui.actions.parsed import ParsedAction

    if not isinstance(text, str):
        raise ActionParseError("action text must be a string", repr(text))
    m = _TYPE_RE.search(text)
    if m is None:
        raise ActionParseError("no \"action_type\" field", text)
    plan = _parse_plan(text)
    try:
        atype = ActionType.from_value(m.group(1))
        if atype == ActionType.DUAL_POINT:
            action = Action.swipe(_parse_point(text, "touch_point"), _parse_point(text, "lift_point"))
        elif atype == ActionType.TYPE:
            tm = _TEXT_RE.search(text)
            action = Action.type(tm.group(1) if tm else "")
        else:
            action = Action(atype)
    except ActionError as exc:
        raise ActionParseError(f"invalid action ({exc})", text) from None
    return ParsedAction(action=action, plan=plan, fmt="autoui")
