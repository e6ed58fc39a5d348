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

from autoui.envs.rollout import evaluate, format_table
from autoui.envs.suite import load_suite


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
    from autoui.experts import ExpertPolicy

    suite = load_suite(args.suite)
    tasks = [t for t in args.tasks.split(",") if t] or None
    t0 = time.perf_counter()
    # the same loop as `autoui eval-miniwob --policy expert`, plus a pass/fail bar per task
    results = evaluate(lambda: MiniWoBEnv(chromium_path=args.chromium), ExpertPolicy, suite,
                       episodes=args.episodes, seed=args.seed, tasks=tasks)
    elapsed = time.perf_counter() - t0
    print(format_table(results))
    print(f"{len(results['tasks']) * args.episodes} episodes in {elapsed:.1f} s")
    results.update(date=datetime.date.today().isoformat(), seconds=round(elapsed, 1),
                   device=f"{os.cpu_count()}-core CPU ({platform.machine()}), headless Chromium")
    out = Path(args.out or f"runs/check_experts_{suite.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    below = [t for t, r in results["tasks"].items() if r["success_rate"] < 100 * args.min_rate]
    if below:
        print(f"below {args.min_rate:.0%}: {', '.join(below)}")
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
