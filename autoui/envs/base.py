"""The environment contract every autoui environment follows.

An environment shows the agent a screenshot and a goal (an `Observation`) and takes
actions in the project's action space (`autoui.actions.Action`, normalized (y, x)).
Each environment converts normalized coordinates to pixels of the screen as it is at
the moment the action runs, so a resized window or a different DPI never shifts a tap.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autoui.actions import Action


class EnvError(RuntimeError):
    """Base class of environment errors (bad task name, page failed to load, ...)."""


class BrowserNotFound(EnvError):
    """No Chromium executable could be found; the message says what to install."""


class BrowserCrashed(EnvError):
    """The page or the browser process died; call `restart()` to bring it back."""


@dataclass(frozen=True)
class Observation:
    """What the agent sees after `reset` or `step`.

    screenshot: RGB pixels, np.uint8 [H, W, 3]; `width`/`height` are W and H.
    goal: the instruction for this episode.
    metadata: environment-specific facts (url, task, raw reward, ...), JSON friendly.
    reward: the environment's reward for the last step (0.0 until something happens).
    done: the episode is over; further `step` calls raise `EnvError`.
    success: True/False once the episode is over and the environment can judge it,
        None while running or when the environment cannot tell.
    """

    screenshot: np.ndarray
    goal: str
    width: int
    height: int
    metadata: dict[str, Any] = field(default_factory=dict)
    reward: float = 0.0
    done: bool = False
    success: bool | None = None

    def __post_init__(self) -> None:
        shot = self.screenshot
        if not isinstance(shot, np.ndarray) or shot.dtype != np.uint8 or shot.ndim != 3 or shot.shape[2] != 3:
            desc = f"{type(shot).__name__} {getattr(shot, 'dtype', '')} {getattr(shot, 'shape', '')}"
            raise ValueError(f"Observation.screenshot must be np.uint8 [H, W, 3], got {desc}")
        if shot.shape[:2] != (self.height, self.width):
            raise ValueError(
                f"Observation size {self.width}x{self.height} does not match screenshot shape {shot.shape}"
            )


class Environment(abc.ABC):
    """A screen the agent can act on. Use as a context manager to always close it."""

    @abc.abstractmethod
    def reset(self, task: str | None = None, seed: int | None = None) -> Observation:
        """Start a new episode (of `task`, with `seed` where the environment supports it)."""

    @abc.abstractmethod
    def step(self, action: Action) -> Observation:
        """Run one action and return the observation after the screen settles."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release every resource (browser processes, servers). Safe to call twice."""

    def __enter__(self) -> "Environment":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
