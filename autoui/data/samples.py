"""Chain-of-action training samples (Auto-UI): one per step, with the action history and plan.

For step i of an episode, the model reads the screenshot, the goal and the previous
`history` actions, and writes the plan (the action types of steps i .. i+plan-1) followed
by the action of step i:

    Previous Actions: "action_type": "DUAL_POINT", "touch_point": "[0.21, 0.5]", ...
    Goal: open the settings app
    -> Action Plan: [DUAL_POINT,TYPE] ; Action Decision: "action_type": "DUAL_POINT", ...

History entries are the previous decisions without their plan (as in Auto-UI). Auto-UI
whitespace-normalises the source text; the goal is normalised here, and the line breaks
between history entries are whitespace to T5-style tokenizers, so the tokens are the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from autoui.actions import FORMATS, Action, ActionType, format_action
from autoui.data.example import Episode


def normalize_space(text: str) -> str:
    """Collapse runs of whitespace to one space and strip the ends."""
    return " ".join(text.split())


@dataclass(frozen=True)
class Sample:
    """One training/evaluation example built from a step and its episode."""

    episode_id: str
    step_id: int
    dataset: str
    image: np.ndarray = field(repr=False)  # uint8 [H, W, 3]
    goal: str
    history: tuple[Action, ...]  # the previous actions, oldest first
    plan: tuple[ActionType, ...]  # this step's action type and the next ones
    target: Action
    ui_positions: np.ndarray = field(repr=False)  # float32 [N, 4] (y, x, h, w), for the metric
    ui_text: tuple[str, ...] = ()  # the text of each box (reading drills use it)
    epoch: int = 0  # the training pass that produced it (streams set it; augmentation draws from it)

    def prompt(self, fmt: str = "autoui") -> str:
        """The source text: `Previous Actions: <one action per line>` then `Goal: <goal>`."""
        _check_fmt(fmt)
        lines = "\n".join(format_action(a, fmt) for a in self.history)
        return f"Previous Actions: {lines}\nGoal: {normalize_space(self.goal)}"

    def target_text(self, fmt: str = "autoui", with_plan: bool = True) -> str:
        """The target text: the plan (unless `with_plan` is False) and this step's action."""
        _check_fmt(fmt)
        return format_action(self.target, fmt, plan=self.plan if with_plan else None)


def _check_fmt(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown action format {fmt!r}; expected one of {FORMATS}")


def make_samples(episode: Episode, history: int = 8, plan: int = 4) -> list[Sample]:
    """One Sample per step of `episode`: up to `history` previous actions, a plan of up to `plan` types."""
    if history < 0:
        raise ValueError(f"history must be >= 0, got {history}")
    if plan < 1:
        raise ValueError(f"plan must be >= 1 (it includes the current action), got {plan}")
    actions = [s.action for s in episode.steps]
    samples = []
    for i, step in enumerate(episode.steps):
        samples.append(Sample(
            episode_id=step.episode_id,
            step_id=step.step_id,
            dataset=step.dataset,
            image=step.image,
            goal=step.goal,
            history=tuple(actions[max(0, i - history):i]),
            plan=tuple(a.action_type for a in actions[i:i + plan]),
            target=step.action,
            ui_positions=step.ui_positions,
            ui_text=tuple(step.ui_text),
        ))
    return samples
