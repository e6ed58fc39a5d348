"""Collect expert demonstrations on MiniWoB++ as AITW-schema TFRecord shards.

    autoui collect miniwob --suite default --episodes 100 --seed 0 --out data/miniwob

Work is split into shards of (task, consecutive seeds); episode i of a task uses seed
S + i. Each worker process drives its own browser. Only successful episodes are
written (failures are counted in the manifest). A record is one step: the screenshot
the action was chosen on, the goal, the action (AITW codes, normalized (y, x) of that
screenshot) and the annotation boxes of the visible elements on it. The page ends a
MiniWoB episode by itself right after the last real action, so every written episode
ends with an explicit STATUS_TASK_COMPLETE step on the final screen: the model learns
to say "done" when the screen shows the finished task.

Layout: OUT/miniwob/<task>-<first seed>-<last seed> (GZIP TFRecord; the folder name is
the dataset name) and OUT/manifest.json listing finished shards, so a rerun skips them.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from autoui.actions import Action
from autoui.data.screen import MANIFEST, manifest_screen
from autoui.envs.rollout import EpisodeResult, run_episode
from autoui.envs.workers import job_results, worker_resource

log = logging.getLogger("autoui.envs.collect")

DATASET = "miniwob"


@dataclass(frozen=True)
class ShardJob:
    """Episodes seeds [first_seed, first_seed + count) of one task, written to one shard."""

    task: str
    first_seed: int
    count: int
    max_steps: int

    @property
    def name(self) -> str:
        return f"{self.task}-{self.first_seed:07d}-{self.first_seed + self.count - 1:07d}"


def plan_jobs(suite: Any, episodes: int, seed: int, shard_size: int, tasks: list[str] | None = None) -> list[ShardJob]:
    """All shards for `episodes` episodes of each suite task, `shard_size` episodes per shard."""
    if episodes < 1 or shard_size < 1:
        raise ValueError(f"episodes and shard_size must be >= 1, got {episodes}, {shard_size}")
    jobs = []
    for entry in suite.select(tasks):
        for start in range(0, episodes, shard_size):
            jobs.append(ShardJob(entry.task, seed + start, min(shard_size, episodes - start), entry.max_steps))
    return jobs


def episode_to_steps(result: EpisodeResult) -> list[Any]:
    """AITW steps for a successful episode, ending with an explicit COMPLETE on the final screen."""
    from autoui.data.aitw import Step

    pairs = list(result.steps)
    if not pairs or pairs[-1][1] != Action.complete():
        pairs.append((result.final_obs, Action.complete()))
    episode_id = f"{DATASET}/{result.task}/{result.seed}"
    steps = []
    for i, (obs, action) in enumerate(pairs):
        ann = obs.metadata.get("ui_annotations") or {"positions": [], "text": [], "types": []}
        steps.append(Step(
            episode_id=episode_id, step_id=i, episode_length=len(pairs), goal=result.goal, image=obs.screenshot,
            action=action, ui_positions=_positions(ann["positions"]), ui_text=list(ann["text"]),
            ui_types=list(ann["types"]), device_type="chromium", current_activity=result.task, dataset=DATASET,
        ))
    return steps


def _positions(rows: list[list[float]]) -> Any:
    import numpy as np

    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


# -- worker side: one browser per process ------------------------------------------------
def _worker_env(chromium_path: str | None, scale: float, view: str) -> tuple[Any, Any]:
    """This process's (MiniWoBEnv, expert policy), made on first use (`autoui.envs.workers`)."""
    def make() -> tuple[Any, Any]:
        from autoui.envs.miniwob import MiniWoBEnv
        from autoui.policy import make_policy

        env = MiniWoBEnv(chromium_path=chromium_path, scale=scale, annotate=True, data_mode="train", view=view)
        return env, make_policy("expert", env)

    return worker_resource(f"miniwob-expert-{scale}-{view}", make, lambda pair: pair[0].close())


def collect_shard(
    job: ShardJob, out_dir: str, chromium_path: str | None = None, scale: float = 1, view: str = "task",
) -> dict[str, Any]:
    """Play one shard's episodes and write the successful ones; returns the shard's counts."""
    from autoui.data.aitw import AITWWriter
    from autoui.envs.base import BrowserCrashed

    env, policy = _worker_env(chromium_path, scale, view)
    folder = Path(out_dir) / DATASET
    tmp, final = folder / f".tmp-{job.name}-{os.getpid()}", folder / job.name
    written = failed = records = 0
    errors: list[str] = []
    with AITWWriter(tmp) as writer:
        for seed in range(job.first_seed, job.first_seed + job.count):
            try:
                result = run_episode(env, policy, job.task, seed, job.max_steps)
            except BrowserCrashed as exc:
                env.restart()
                failed += 1
                errors.append(f"seed {seed}: {exc}")
                continue
            if not result.success:
                failed += 1
                errors.append(f"seed {seed}: {result.error or f'reward {result.reward}'}")
                continue
            for step in episode_to_steps(result):
                writer.write_step(step)
                records += 1
            written += 1
    os.replace(tmp, final)  # a shard appears only when complete
    return {**asdict(job), "shard": job.name, "written": written, "failed": failed, "records": records,
            "errors": errors[:5]}


def _run(args: tuple[ShardJob, str, str | None, float, str]) -> dict[str, Any]:
    return collect_shard(*args)


# -- parent side ---------------------------------------------------------------------------
def load_manifest(out_dir: str | Path, screen: dict[str, Any] | None = None) -> dict[str, Any]:
    """Finished shards by name (an empty dict for a fresh output folder).

    With `screen` ({"view": ..., "scale": ...}) a folder recorded with other screens is refused:
    one dataset never mixes two kinds of screenshot. Manifests older than the field are "task", 1.
    """
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
        shards = manifest["shards"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a collection manifest ({exc}); move it away to start over") from exc
    recorded = manifest_screen(manifest)
    if screen is not None and shards and recorded != screen:
        raise ValueError(f"{out_dir} holds screens recorded with {recorded}, not {screen}; use another --out")
    return shards


def _save_manifest(out_dir: Path, shards: dict[str, Any], screen: dict[str, Any]) -> None:
    tmp = out_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"dataset": DATASET, "screen": screen, "shards": shards}, indent=1, sort_keys=True))
    os.replace(tmp, out_dir / MANIFEST)


def collect(
    jobs: list[ShardJob], out_dir: str | Path, workers: int = 2, chromium_path: str | None = None,
    scale: float = 1, progress: bool = True, view: str = "task",
) -> dict[str, Any]:
    """Run the jobs not yet in the manifest on `workers` processes; returns totals."""
    from tqdm import tqdm

    out = Path(out_dir)
    (out / DATASET).mkdir(parents=True, exist_ok=True)
    screen = {"view": view, "scale": scale}
    done = load_manifest(out, screen)
    todo = [j for j in jobs if not (j.name in done and (out / DATASET / j.name).is_file())]
    log.info("%d shards planned, %d already done, %d to run", len(jobs), len(jobs) - len(todo), len(todo))
    bar = tqdm(total=sum(j.count for j in todo), desc="collect", unit="ep", disable=not progress)
    args = [(j, str(out), chromium_path, scale, view) for j in todo]
    try:
        with job_results(_run, args, workers) as results:
            for res in results:
                done[res["shard"]] = res
                _save_manifest(out, done, screen)
                bar.update(res["count"])
    finally:
        bar.close()
    selected = [done[j.name] for j in jobs]
    return {key: sum(s[key] for s in selected) for key in ("written", "failed", "records")} | {
        "shards": len(jobs), "skipped": len(jobs) - len(todo)}
