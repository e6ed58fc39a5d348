"""Measure how often each expert solves its task: episodes, per-task results and a table.

`train/check_experts.py` is the command-line front. Episodes go through the project's
one episode loop (`autoui.envs.rollout.run_episode`); this module keeps a compact record
per episode (no screenshots) so that thousands of episodes fit in memory, and adds what
the step limits of a suite are chosen from: the most actions an expert needed.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from autoui.envs.rollout import run_episode
from autoui.experts import ExpertPolicy

logger = logging.getLogger("autoui.experts.evaluate")


@dataclass(frozen=True)
class EpisodeResult:
    """One expert episode: did it succeed, in how many actions, and why it ended."""

    task: str
    seed: int
    success: bool
    steps: int
    seconds: float
    reward: float
    error: str = ""


@dataclass
class TaskResult:
    """All episodes of one task."""

    task: str
    episodes: list[EpisodeResult] = field(default_factory=list)

    @property
    def successes(self) -> int:
        return sum(e.success for e in self.episodes)

    @property
    def rate(self) -> float:
        return self.successes / len(self.episodes) if self.episodes else 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-friendly totals plus the failed episodes (seed, steps, error) for debugging."""
        n = len(self.episodes)
        steps = [e.steps for e in self.episodes]
        return {
            "task": self.task,
            "episodes": n,
            "successes": self.successes,
            "success_rate": round(self.rate, 4),
            "mean_steps": round(sum(steps) / n, 2) if n else 0.0,
            "max_steps_used": max(steps, default=0),
            "mean_seconds": round(sum(e.seconds for e in self.episodes) / n, 3) if n else 0.0,
            "failures": [asdict(e) for e in self.episodes if not e.success],
        }


def run_expert_episode(env: Any, policy: ExpertPolicy, task: str, seed: int, max_steps: int) -> EpisodeResult:
    """Play one expert episode of (task, seed) through the project's one episode loop.

    An expert that gives up (ExpertError) or a step limit reached before the page judged
    the task ends the episode as a failure, with the reason kept in `error`.
    """
    t0 = time.perf_counter()
    played = run_episode(env, policy, task, seed, max_steps)
    obs = played.final_obs
    error = played.error or ""
    if not played.success and not error:
        reason = obs.metadata.get("reason") if obs is not None else None
        error = f"reward {played.reward}: {reason or ('no verdict within max_steps' if obs and not obs.done else '')}"
    return EpisodeResult(task, seed, played.success, len(played.steps), round(time.perf_counter() - t0, 4),
                         played.reward, error.strip())


def check_task(env: Any, task: str, seeds: Iterable[int], max_steps: int, progress: Any = None) -> TaskResult:
    """Run the task's expert once per seed; `progress` (a tqdm bar) is advanced per episode."""
    policy = ExpertPolicy(env)
    result = TaskResult(task)
    for seed in seeds:
        episode = run_expert_episode(env, policy, task, seed, max_steps)
        if not episode.success:
            logger.info("%s seed %d failed after %d steps: %s", task, seed, episode.steps, episode.error)
        result.episodes.append(episode)
        if progress is not None:
            progress.update(1)
    return result


def format_table(results: list[TaskResult]) -> str:
    """A fixed-width table: task, successes/episodes, rate, mean and max steps, seconds per episode."""
    header = f"{'task':<26} {'success':>9} {'rate':>7} {'steps':>6} {'max':>4} {'s/ep':>6}"
    lines = [header, "-" * len(header)]
    for r in results:
        s = r.summary()
        lines.append(f"{r.task:<26} {s['successes']:>4}/{s['episodes']:<4} {100 * r.rate:>6.1f}% "
                     f"{s['mean_steps']:>6.2f} {s['max_steps_used']:>4} {s['mean_seconds']:>6.3f}")
    total = sum(len(r.episodes) for r in results)
    wins = sum(r.successes for r in results)
    if total:
        lines.append("-" * len(header))
        lines.append(f"{'all':<26} {wins:>4}/{total:<4} {100 * wins / total:>6.1f}%")
    return "\n".join(lines)
