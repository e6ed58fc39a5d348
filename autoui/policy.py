"""The Policy protocol and the registry of policies the rollout and evaluation loops use.

A policy sees what the agent may see (the observation and its own earlier actions) and
returns one `Action`. The scripted experts and the learned model go through the same
loop (`autoui.envs.rollout`), so their numbers are comparable.

    policy = make_policy("expert", env)          # autoui.experts.ExpertPolicy(env)
    policy.reset(obs.goal); action = policy.act(obs, history)

Hook for the learned model: decorate a factory `(env, model_path=..., **options) -> Policy`
with `register_policy("model")` in a module listed in `PLUGIN_MODULES`; `autoui
eval-miniwob --model PATH` then calls `make_policy("model", env, model_path=PATH)`.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Protocol, runtime_checkable

from autoui.actions import Action
from autoui.envs.base import Environment, Observation

PLUGIN_MODULES: dict[str, str] = {"model": "autoui.agent"}
"""Policy name -> module that registers it when imported (loaded only when asked for)."""


@runtime_checkable
class Policy(Protocol):
    """Anything that picks the next action from the observation and the action history."""

    def reset(self, goal: str) -> None:
        """Forget the previous episode; the new episode's goal is `goal`."""

    def act(self, obs: Observation, history: list[Action]) -> Action:
        """The next action for `obs`; `history` holds this episode's earlier actions, oldest first."""


PolicyFactory = Callable[..., Policy]
_POLICIES: dict[str, PolicyFactory] = {}


class UnknownPolicyError(LookupError):
    """No policy registered under that name."""


def register_policy(name: str) -> Callable[[PolicyFactory], PolicyFactory]:
    """Decorator: make `factory(env, **options) -> Policy` available as `make_policy(name, env)`."""

    def decorate(factory: PolicyFactory) -> PolicyFactory:
        if name in _POLICIES and _POLICIES[name] is not factory:
            raise ValueError(f"policy {name!r} is already registered")
        _POLICIES[name] = factory
        return factory

    return decorate


def policy_names() -> list[str]:
    """Names accepted by `make_policy` (plugins count once their module imports)."""
    return sorted(set(_POLICIES) | set(PLUGIN_MODULES))


def make_policy(name: str, env: Environment, **options: Any) -> Policy:
    """Build the policy registered as `name` for `env` (options go to its factory)."""
    if name not in _POLICIES and name in PLUGIN_MODULES:
        try:
            importlib.import_module(PLUGIN_MODULES[name])
        except ImportError as exc:
            raise UnknownPolicyError(f"policy {name!r} needs {PLUGIN_MODULES[name]}, which is missing: {exc}") from exc
    if name not in _POLICIES:
        raise UnknownPolicyError(f"unknown policy {name!r}; known: {', '.join(policy_names())}")
    policy = _POLICIES[name](env, **options)
    if not isinstance(policy, Policy):
        raise TypeError(f"policy factory {name!r} returned {type(policy).__name__}, which has no reset/act")
    return policy


@register_policy("expert")
def _expert(env: Environment, **options: Any) -> Policy:
    if options:
        raise ValueError(f"the expert policy takes no options, got {sorted(options)}")
    from autoui.experts import ExpertPolicy

    return ExpertPolicy(env)
