"""The result of parsing action text: the action, the optional plan, and which format it was."""
from __future__ import annotations

from dataclasses import dataclass

from autoui.actions.space import Action, ActionType


@dataclass(frozen=True)
class ParsedAction:
    action: Action
    plan: tuple[ActionType, ...] | None
    fmt: str  # "autoui" | "compact"
