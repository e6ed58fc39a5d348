"""The action space shared by every environment, dataset, model and metric.

`Action` is AITW's action with normalized (y, x) coordinates. Two text formats render
and parse it: Auto-UI's (for interoperability with published data and checkpoints) and
a compact one (for fast decoding). Parsing never evaluates text; malformed text raises
`ActionParseError` carrying the text.
"""
from __future__ import annotations

from autoui.actions.autoui_format import format_autoui, parse_autoui
from autoui.actions.compact import format_compact, parse_compact
from autoui.actions.parsed import ParsedAction
from autoui.actions.space import (
    NO_POINT,
    SCROLL_POINTS,
    TAP_THRESHOLD,
    Action,
    ActionError,
    ActionParseError,
    ActionType,
)

FORMATS = ("autoui", "compact")

__all__ = [
    "Action", "ActionError", "ActionParseError", "ActionType", "FORMATS", "NO_POINT", "ParsedAction",
    "SCROLL_POINTS", "TAP_THRESHOLD", "format_action", "format_autoui", "format_compact", "parse_action",
    "parse_autoui", "parse_compact",
]


def format_action(action: Action, fmt: str = "autoui", plan=None) -> str:
    """Render `action` in `fmt` ("autoui" or "compact"), with the plan prefix when given."""
    if fmt == "autoui":
        return format_autoui(action, plan)
    if fmt == "compact":
        return format_compact(action, plan)
    raise ValueError(f"unknown action format {fmt!r}; expected one of {FORMATS}")


def parse_action(text: str) -> ParsedAction:
    """Parse action text in either format (detected from its content)."""
    if not isinstance(text, str):
        raise ActionParseError("action text must be a string", repr(text))
    if '"action_type"' in text or "Action Decision" in text:
        return parse_autoui(text)
    return parse_compact(text)
