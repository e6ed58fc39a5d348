"""Scripted expert policies for MiniWoB++ tasks, and the registry that finds them by task name.

    from autoui.experts import ExpertPolicy
    policy = ExpertPolicy(env)            # env: autoui.envs.miniwob.MiniWoBEnv
    obs = env.reset("click-button", seed=1)
    policy.reset(obs.goal)
    while not obs.done:
        obs = env.step(policy.act(obs, history))

Experts read the page's DOM (privileged access a learned agent does not have) and emit only
user-level actions: taps at element points and typed text. They produce demonstrations and an
upper bound for the default task suite (`envs/miniwob/default.json`).
"""
from __future__ import annotations

from typing import Any, Sequence

from autoui.actions import Action
from autoui.experts.base import Expert, ExpertError, GoalParseError

__all__ = [
    "Expert", "ExpertError", "ExpertPolicy", "GoalParseError", "UnknownExpertError",
    "expert_tasks", "get_expert", "register",
]

_REGISTRY: dict[str, type[Expert]] = {}


class UnknownExpertError(LookupError):
    """No expert is registered for the requested task."""


def register(cls: type[Expert]) -> type[Expert]:
    """Class decorator: register an Expert subclass under each name in its `tasks`."""
    if not cls.tasks:
        raise ValueError(f"{cls.__name__} lists no tasks")
    for task in cls.tasks:
        if task in _REGISTRY and _REGISTRY[task] is not cls:
            raise ValueError(f"task {task!r} already has expert {_REGISTRY[task].__name__}")
        _REGISTRY[task] = cls
    return cls


def _load_families() -> None:
    # Importing the family modules runs their @register decorators.
    from autoui.experts import click, forms, visual  # noqa: F401


def get_expert(task: str) -> type[Expert]:
    """The Expert class for a MiniWoB++ task name (e.g. "click-button"); construct it with the env."""
    _load_families()
    try:
        return _REGISTRY[task]
    except KeyError:
        raise UnknownExpertError(f"no expert for task {task!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def expert_tasks() -> list[str]:
    """Sorted names of all tasks that have an expert."""
    _load_families()
    return sorted(_REGISTRY)


class ExpertPolicy:
    """The Policy protocol over the experts: picks the expert for `env.task` at every reset."""

    def __init__(self, env: Any):
        self.env = env
        self.expert: Expert | None = None

    def reset(self, goal: str) -> None:
        """Start an episode of the environment's current task with this goal."""
        cls = get_expert(str(self.env.task))
        if self.expert is None or type(self.expert) is not cls:
            self.expert = cls(self.env)
        self.expert.reset(goal)

    def act(self, obs: Any, history: Sequence[Action] = ()) -> Action:
        """The expert's next action for the page as it is now."""
        if self.expert is None:
            raise ExpertError("ExpertPolicy.act called before reset(goal)")
        return self.expert.act(obs, history)
