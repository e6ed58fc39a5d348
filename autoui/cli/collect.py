"""`autoui collect miniwob`: record expert demonstrations as AITW-schema TFRecord shards."""
from __future__ import annotations

import argparse
import json
from typing import Any

from autoui.envs.suite import add_suite_arguments


def register(subparsers: Any) -> None:
    """Add the `collect` command."""
    p = subparsers.add_parser("collect", help="record expert demonstrations (AITW TFRecord shards)",
                              description=__doc__)
    p.add_argument("source", choices=["miniwob", "reading"],
                   help="miniwob: MiniWoB++ with the scripted experts; reading: synthetic pages of random words "
                        "(autoui.envs.reading_pages)")
    add_suite_arguments(p, episodes=100, seed=0)
    p.add_argument("--out", required=True, help="output folder (miniwob: shards in OUT/miniwob/, manifest in OUT/; reading: shards in OUT/reading/)")
    p.add_argument("--workers", type=int, default=2, help="processes, one browser each")
    p.add_argument("--shard-size", type=int, default=25, help="episodes per shard (the unit of resuming)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Plan the shards, run the missing ones, print the totals as JSON."""
    from autoui.cli import CLIError
    from autoui.envs.base import EnvError
    from autoui.envs.collect import collect, plan_jobs
    from autoui.envs.suite import SuiteError, load_suite

    if args.workers < 1 or args.episodes < 1 or args.shard_size < 1:
        raise CLIError("--workers, --episodes and --shard-size must be >= 1")
    if args.source == "reading":
        return _run_reading(args)
    try:
        suite = load_suite(args.suite)
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
        jobs = plan_jobs(suite, args.episodes, args.seed, args.shard_size, tasks)
        totals = collect(jobs, args.out, workers=args.workers, chromium_path=args.chromium, scale=args.scale,
                         view=args.view or "task")
    except (SuiteError, EnvError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    print(json.dumps(totals))
    return 0


def _run_reading(args: argparse.Namespace) -> int:
    """Render reading pages (--suite, --tasks and --scale do not apply; --view does)."""
    from autoui.cli import CLIError
    from autoui.envs.base import EnvError
    from autoui.envs.reading_pages import collect_pages

    try:
        totals = collect_pages(args.out, args.episodes, args.seed, args.shard_size, args.workers, args.chromium,
                               view=args.view or "task")
    except (EnvError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    print(json.dumps(totals))
    return 0
