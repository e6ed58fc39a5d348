"""The one episode loop and the online evaluation every policy goes through.

`run_episode` plays a policy in an environment until the environment says the episode is
over or the step limit is reached; `evaluate` runs a task suite and reports success rates
(0-100) per task and their unweighted mean, with the wall time of an agent step (policy +
action + settle + screenshot): median, p95 and mean over every step. A policy that raises,
or a browser that crashes, fails that episode (the reason is kept and counted), it never
silently disappears.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from autoui.actions import Action
from autoui.envs.base import BrowserCrashed, EnvError, Environment, Observation

log = logging.getLogger("autoui.envs.rollout")


@dataclass
class EpisodeResult:
    """One played episode. `steps` pairs each observation with the action chosen on it."""

    task: str
    seed: int
    goal: str
    steps: list[tuple[Observation, Action]]
    success: bool
    reward: float
    seconds_per_step: float
    final_obs: Observation | None = None  # the screen after the last action
    error: str | None = None  # why the episode stopped early (policy or environment error)
    step_seconds: list[float] = field(default_factory=list)  # wall time of each step (act + env.step)

    @property
    def actions(self) -> list[Action]:
        """The actions taken, in order."""
        return [a for _, a in self.steps]


def run_episode(env: Environment, policy: Any, task: str | None, seed: int, max_steps: int) -> EpisodeResult:
    """Reset `env` to (task, seed), then alternate policy.act / env.step until done or `max_steps`.

    Policy and environment errors end the episode as a failure with `error` set;
    `BrowserCrashed` propagates (the caller must `restart()` the environment).
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    obs = env.reset(task, seed)
    policy.reset(obs.goal)
    steps: list[tuple[Observation, Action]] = []
    error = None
    step_seconds: list[float] = []
    start = time.perf_counter()
    while not obs.done and len(steps) < max_steps:
        history = [a for _, a in steps]
        step_start = time.perf_counter()
        try:
            action = policy.act(obs, history)
            if not isinstance(action, Action):
                raise TypeError(f"policy returned {type(action).__name__}, not an Action")
        except Exception as exc:  # noqa: BLE001 - any policy failure is this episode's failure, reported
            error = f"policy: {type(exc).__name__}: {exc}"
            break
        try:
            new_obs = env.step(action)
        except BrowserCrashed:
            raise
        except EnvError as exc:
            error = f"env: {exc}"
            break
        steps.append((obs, action))
        step_seconds.append(time.perf_counter() - step_start)
        obs = new_obs
    elapsed = time.perf_counter() - start
    if error:
        log.warning("%s seed %d: %s", task, seed, error)
    return EpisodeResult(
        task=str(task), seed=seed, goal=obs.goal, steps=steps, success=bool(obs.done and obs.success),
        reward=float(obs.reward), seconds_per_step=elapsed / max(1, len(steps)), final_obs=obs, error=error,
        step_seconds=step_seconds,
    )


@dataclass
class TaskStats:
    """Running totals for one task."""

    episodes: int = 0
    successes: int = 0
    steps: int = 0
    seconds: float = 0.0
    max_steps_used: int = 0
    errors: list[str] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)

    def add(self, result: EpisodeResult) -> None:
        self.episodes += 1
        self.successes += int(result.success)
        self.steps += len(result.steps)
        self.max_steps_used = max(self.max_steps_used, len(result.steps))
        self.seconds += result.seconds_per_step * len(result.steps)
        self.step_seconds.extend(result.step_seconds)
        if not result.success:
            self.errors.append(f"seed {result.seed}: {failure_reason(result)}")

    def to_dict(self) -> dict[str, Any]:
        n = max(1, self.episodes)
        return {
            "episodes": self.episodes, "success_rate": 100.0 * self.successes / n,
            "mean_steps": self.steps / n, "max_steps_used": self.max_steps_used,
            "failures": len(self.errors), "error_examples": self.errors[:3],
        }


def failure_reason(result: EpisodeResult) -> str:
    """Why an episode failed: the policy/environment error, else the task's own verdict."""
    if result.error:
        return result.error
    obs = result.final_obs
    if obs is None or not obs.done:
        return "no verdict within max_steps"
    return f"reward {result.reward}: {obs.metadata.get('reason') or 'task failed'}"


def _crashed_result(task: str, seed: int, exc: BrowserCrashed) -> EpisodeResult:
    return EpisodeResult(task, seed, "", [], False, 0.0, 0.0, None, f"env: {exc}")


def evaluate(
    env_factory: Callable[[], Environment], policy_factory: Callable[[Environment], Any], suite: Any,
    episodes: int, seed: int, tasks: Iterable[str] | None = None, progress: bool = True,
) -> dict[str, Any]:
    """Run `episodes` episodes of each suite task (episode i uses seed `seed + i`).

    `suite` is an `autoui.envs.suite.Suite` (tasks with per-task `max_steps`); `tasks`
    restricts it. Returns {"tasks": {task: {episodes, success_rate, mean_steps, errors}},
    "mean_success": unweighted mean over tasks, "seconds_per_step": mean over all steps,
    "step_ms": {"median", "p95", "mean", "n"} over all steps, ...}.
    """
    from tqdm import tqdm

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    selected = suite.select(list(tasks) if tasks else None)
    stats = {t.task: TaskStats() for t in selected}
    with env_factory() as env:
        policy = policy_factory(env)
        bar = tqdm(total=len(selected) * episodes, desc="eval", unit="ep", disable=not progress)
        for entry in selected:
            for i in range(episodes):
                try:
                    result = run_episode(env, policy, entry.task, seed + i, entry.max_steps)
                except BrowserCrashed as exc:
                    log.warning("%s seed %d: browser crashed, restarting: %s", entry.task, seed + i, exc)
                    env.restart()
                    result = _crashed_result(entry.task, seed + i, exc)
                stats[entry.task].add(result)
                bar.update(1)
        bar.close()
    return summarize(stats, episodes=episodes, seed=seed, suite=getattr(suite, "name", str(suite)))


def summarize(stats: dict[str, TaskStats], **info: Any) -> dict[str, Any]:
    """The evaluation JSON from per-task totals (rates 0-100, unweighted mean over tasks)."""
    per_task = {name: s.to_dict() for name, s in stats.items()}
    total_steps = sum(s.steps for s in stats.values())
    mean = sum(t["success_rate"] for t in per_task.values()) / max(1, len(per_task))
    return {
        "tasks": per_task, "mean_success": mean,
        "seconds_per_step": sum(s.seconds for s in stats.values()) / max(1, total_steps),
        "step_ms": step_percentiles([x for s in stats.values() for x in s.step_seconds]), **info,
    }


def step_percentiles(seconds: list[float]) -> dict[str, float]:
    """Median, p95 and mean (ms) of agent-step wall times; zeros for no steps."""
    if not seconds:
        return {"median": 0.0, "p95": 0.0, "mean": 0.0, "n": 0}
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    return {"median": round(float(np.median(ms)), 2), "p95": round(float(np.percentile(ms, 95)), 2),
            "mean": round(float(ms.mean()), 2), "n": int(ms.size)}


def format_table(results: dict[str, Any]) -> str:
    """A fixed-width table of an evaluation result."""
    rows = [f"{'task':<28} {'episodes':>8} {'success %':>9} {'steps':>6} {'max':>4} {'failed':>6}"]
    for name, t in results["tasks"].items():
        rows.append(f"{name:<28} {t['episodes']:>8} {t['success_rate']:>9.1f} {t['mean_steps']:>6.2f} "
                    f"{t['max_steps_used']:>4} {t['failures']:>6}")
    rows.append(f"{'mean':<28} {'':>8} {results['mean_success']:>9.1f}")
    step = results["step_ms"]
    rows.append(f"agent step (screenshot + model + action): median {step['median']:.1f} ms, "
                f"p95 {step['p95']:.1f} ms, mean {step['mean']:.1f} ms over {step['n']} steps")
    return "\n".join(rows)
