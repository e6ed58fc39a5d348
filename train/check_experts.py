"""Run every scripted expert of a MiniWoB++ suite on N seeds; print a per-task table and write JSON.

    .venv/bin/python train/check_experts.py --suite default --episodes 50 --seed 100000

Episode i of every task uses seed `--seed + i`. Success is the task's own verdict (raw
reward > 0, no time decay). Exit status 1 when a task is below `--min-rate`.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

try:
    import autoui  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm

from autoui.envs.suite import load_suite
from autoui.experts.evaluate import check_task, format_table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="default", help="suite name (envs/miniwob/<name>.json) or a .json path")
    p.add_argument("--tasks", default="", help="comma-separated subset of the suite's tasks")
    p.add_argument("--episodes", type=int, default=50, help="episodes (seeds) per task")
    p.add_argument("--seed", type=int, default=100000, help="seed of the first episode")
    p.add_argument("--min-rate", type=float, default=0.98, help="exit 1 when a task's success rate is below this")
    p.add_argument("--out", default="", help="JSON output path (default runs/check_experts_<suite>.json)")
    p.add_argument("--chromium", default=None, help="Chromium executable (default: the env's own lookup)")
    args = p.parse_args(argv)
    if args.episodes < 1:
        p.error("--episodes must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from autoui.envs.miniwob import MiniWoBEnv  # playwright is heavy: import only when running

    suite = load_suite(args.suite)
    entries = suite.select([t for t in args.tasks.split(",") if t])
    seeds = range(args.seed, args.seed + args.episodes)
    results, t0 = [], time.perf_counter()
    with MiniWoBEnv(chromium_path=args.chromium) as env, tqdm(total=len(entries) * args.episodes, unit="ep", mininterval=1.0) as bar:
        for entry in entries:
            bar.set_description(entry.task)
            results.append(check_task(env, entry.task, seeds, entry.max_steps, progress=bar))
    elapsed = time.perf_counter() - t0
    print(format_table(results))
    print(f"{len(entries) * args.episodes} episodes in {elapsed:.1f} s")

    report = {
        "suite": suite.name,
        "episodes_per_task": args.episodes,
        "first_seed": args.seed,
        "date": datetime.date.today().isoformat(),
        "device": f"{os.cpu_count()}-core CPU ({platform.machine()}), headless Chromium",
        "seconds": round(elapsed, 1),
        "tasks": [r.summary() for r in results],
    }
    out = Path(args.out or f"runs/check_experts_{suite.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    below = [r.task for r in results if r.rate < args.min_rate]
    if below:
        print(f"below {args.min_rate:.0%}: {', '.join(below)}")
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
