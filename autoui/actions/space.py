"""AITW's action space: action codes and one validated action type for every environment.

Coordinates are normalized (y, x) in [0, 1] of the screen the action is meant for, in
that order (AITW's convention). Environments turn them into pixels of the *actual*
screen only when they execute the action (`Action.touch_pixels`).
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

TAP_THRESHOLD = 0.04
"""A DUAL_POINT whose touch and lift are within this distance (normalized units) is a tap."""

NO_POINT: tuple[float, float] = (-1.0, -1.0)
"""AITW's marker for an unused touch/lift point."""

SCROLL_POINTS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    # direction the finger moves -> (touch, lift); Auto-UI's fixed scroll points
    "up": ((0.8, 0.5), (0.2, 0.5)),
    "down": ((0.2, 0.5), (0.8, 0.5)),
    "left": ((0.5, 0.8), (0.5, 0.2)),
    "right": ((0.5, 0.2), (0.5, 0.8)),
}


class ActionType(enum.IntEnum):
    """AITW's action codes (0, 1, 2, 8 and 9 are unused by the dataset)."""

    TYPE = 3
    DUAL_POINT = 4
    PRESS_BACK = 5
    PRESS_HOME = 6
    PRESS_ENTER = 7
    STATUS_TASK_COMPLETE = 10
    STATUS_TASK_IMPOSSIBLE = 11

    @classmethod
    def from_value(cls, value: int | str) -> "ActionType":
        """Accept an AITW code (int) or a name such as "DUAL_POINT"; raise ActionError otherwise."""
        try:
            if isinstance(value, str):
                return cls[value.strip().upper()]
            return cls(int(value))
        except (KeyError, ValueError, TypeError):
            raise ActionError(f"unknown action type {value!r}; expected one of {[t.name for t in cls]}") from None


class ActionError(ValueError):
    """An action with invalid values (bad type, coordinates out of range, stray text)."""


class ActionParseError(ValueError):
    """Text that is not a valid action in any supported format. `.text` holds the offending text."""

    def __init__(self, message: str, text: str):
        super().__init__(f"{message}: {text!r}" if len(text) <= 200 else f"{message}: {text[:200]!r}...")
        self.text = text


_KIND_BY_TYPE = {
    ActionType.TYPE: "type",
    ActionType.PRESS_BACK: "back",
    ActionType.PRESS_HOME: "home",
    ActionType.PRESS_ENTER: "enter",
    ActionType.STATUS_TASK_COMPLETE: "complete",
    ActionType.STATUS_TASK_IMPOSSIBLE: "impossible",
}


def _point(value: Any, name: str) -> tuple[float, float]:
    try:
        y, x = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ActionError(f"{name} must be a pair of numbers (y, x), got {value!r}") from None
    if not (math.isfinite(y) and math.isfinite(x)):
        raise ActionError(f"{name} must be finite, got {value!r}")
    return (y, x)


@dataclass(frozen=True)
class Action:
    """One agent action in AITW's space. Validated on construction (raises ActionError)."""

    action_type: ActionType
    touch_yx: tuple[float, float] = NO_POINT
    lift_yx: tuple[float, float] = NO_POINT
    typed_text: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "action_type", ActionType.from_value(self.action_type))
        touch, lift = _point(self.touch_yx, "touch_yx"), _point(self.lift_yx, "lift_yx")
        if self.action_type == ActionType.DUAL_POINT:
            for name, p in (("touch_yx", touch), ("lift_yx", lift)):
                if not all(0.0 <= v <= 1.0 for v in p):
                    raise ActionError(f"DUAL_POINT {name} must lie in [0, 1], got {p}")
        else:
            touch, lift = NO_POINT, NO_POINT  # AITW stores (-1, -1) for non-gestures
        if not isinstance(self.typed_text, str):
            raise ActionError(f"typed_text must be a string, got {type(self.typed_text).__name__}")
        if self.typed_text and self.action_type != ActionType.TYPE:
            raise ActionError(f"only TYPE actions carry text, {self.action_type.name} got {self.typed_text!r}")
        object.__setattr__(self, "touch_yx", touch)
        object.__setattr__(self, "lift_yx", lift)

    # -- constructors ---------------------------------------------------------------
    @classmethod
    def tap(cls, y: float, x: float) -> "Action":
        return cls(ActionType.DUAL_POINT, (y, x), (y, x))

    @classmethod
    def swipe(cls, touch_yx: tuple[float, float], lift_yx: tuple[float, float]) -> "Action":
        return cls(ActionType.DUAL_POINT, touch_yx, lift_yx)

    @classmethod
    def scroll(cls, direction: str) -> "Action":
        """A swipe with Auto-UI's fixed points; `direction` is where the finger moves."""
        if direction not in SCROLL_POINTS:
            raise ActionError(f"scroll direction must be one of {sorted(SCROLL_POINTS)}, got {direction!r}")
        touch, lift = SCROLL_POINTS[direction]
        return cls(ActionType.DUAL_POINT, touch, lift)

    @classmethod
    def type(cls, text: str) -> "Action":
        return cls(ActionType.TYPE, typed_text=text)

    @classmethod
    def back(cls) -> "Action":
        return cls(ActionType.PRESS_BACK)

    @classmethod
    def home(cls) -> "Action":
        return cls(ActionType.PRESS_HOME)

    @classmethod
    def enter(cls) -> "Action":
        return cls(ActionType.PRESS_ENTER)

    @classmethod
    def complete(cls) -> "Action":
        return cls(ActionType.STATUS_TASK_COMPLETE)

    @classmethod
    def impossible(cls) -> "Action":
        return cls(ActionType.STATUS_TASK_IMPOSSIBLE)

    @classmethod
    def from_aitw(cls, action_type: int, touch_yx: Any, lift_yx: Any, typed_text: str = "") -> "Action":
        """Build from a dataset record's fields (text on non-TYPE actions is dropped, as AITW leaves it empty)."""
        atype = ActionType.from_value(action_type)
        text = typed_text if atype == ActionType.TYPE else ""
        if atype != ActionType.DUAL_POINT:
            return cls(atype, typed_text=text)
        return cls(atype, tuple(touch_yx), tuple(lift_yx), text)

    # -- properties -----------------------------------------------------------------
    @property
    def is_gesture(self) -> bool:
        return self.action_type == ActionType.DUAL_POINT

    @property
    def is_tap(self) -> bool:
        return self.is_gesture and math.dist(self.touch_yx, self.lift_yx) <= TAP_THRESHOLD

    @property
    def is_swipe(self) -> bool:
        return self.is_gesture and not self.is_tap

    @property
    def kind(self) -> str:
        """One of "tap", "swipe", "type", "back", "home", "enter", "complete", "impossible"."""
        if self.is_gesture:
            return "tap" if self.is_tap else "swipe"
        return _KIND_BY_TYPE[self.action_type]

    @property
    def scroll_direction(self) -> str | None:
        """For swipes: where the finger moves along the main (larger-change) axis; None otherwise."""
        if not self.is_swipe:
            return None
        dy = self.lift_yx[0] - self.touch_yx[0]
        dx = self.lift_yx[1] - self.touch_yx[1]
        if abs(dy) >= abs(dx):  # ties go to y, as argmax over (y, x) does in AITW's code
            return "down" if dy > 0 else "up"
        return "right" if dx > 0 else "left"

    # -- conversions ----------------------------------------------------------------
    def touch_pixels(self, width: float, height: float) -> tuple[float, float]:
        """The touch point as (x, y) pixels of a screen of the given size."""
        return _to_pixels(self, self.touch_yx, width, height)

    def lift_pixels(self, width: float, height: float) -> tuple[float, float]:
        """The lift point as (x, y) pixels of a screen of the given size."""
        return _to_pixels(self, self.lift_yx, width, height)

    def to_dict(self) -> dict[str, Any]:
        return {
            "action_type": self.action_type.name,
            "touch_yx": list(self.touch_yx),
            "lift_yx": list(self.lift_yx),
            "typed_text": self.typed_text,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Action":
        if not isinstance(d, dict) or "action_type" not in d:
            raise ActionError(f"an action dict needs an 'action_type', got {d!r}")
        return cls.from_aitw(
            d["action_type"], d.get("touch_yx", NO_POINT), d.get("lift_yx", NO_POINT), d.get("typed_text", "")
        )

    def __str__(self) -> str:
        from autoui.actions.compact import format_compact

        return format_compact(self)


def _to_pixels(action: Action, yx: tuple[float, float], width: float, height: float) -> tuple[float, float]:
    if not action.is_gesture:
        raise ActionError(f"{action.action_type.name} has no screen point")
    if width <= 0 or height <= 0:
        raise ActionError(f"screen size must be positive, got {width}x{height}")
    return (yx[1] * width, yx[0] * height)
