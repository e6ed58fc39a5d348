"""`autoui aitw-stats`: episodes, steps and the action-kind histogram of each AITW dataset folder.

    autoui aitw-stats --data data/aitw [--json stats.json] [--skip-corrupt]
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from autoui.cli import CLIError

KINDS = ("tap", "swipe", "type", "back", "home", "enter", "complete", "impossible")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `aitw-stats` command."""
    p = subparsers.add_parser("aitw-stats", help="count episodes, steps and action kinds per AITW dataset",
                              description="Count episodes, steps and action kinds per AITW dataset folder.")
    p.add_argument("--data", required=True, metavar="ROOT", help="folder with one sub-folder of shards per dataset")
    p.add_argument("--json", metavar="OUT", help="also write the counts as JSON")
    p.add_argument("--skip-corrupt", action="store_true", help="skip and count damaged records instead of failing")
    p.set_defaults(handler=run)


def collect_stats(root: str | Path, skip_corrupt: bool = False) -> dict[str, dict[str, Any]]:
    """`{dataset: {"episodes", "steps", "actions": {kind: count}, "skipped_records", "truncated_files"}}`."""
    from tqdm import tqdm

    from autoui.cli.eval_aitw import data_dirs
    from autoui.data.aitw import ReadStats, read_episodes

    out: dict[str, dict[str, Any]] = {}
    for name, folder in data_dirs(str(root)).items():
        stats, kinds = ReadStats(), Counter()
        for ep in tqdm(read_episodes(folder, skip_corrupt=skip_corrupt, stats=stats), desc=name, unit=" episodes",
                       disable=None):
            kinds.update(s.action.kind for s in ep.steps)
        out[name] = {"episodes": stats.episodes, "steps": stats.steps, "actions": {k: kinds[k] for k in KINDS},
                     "skipped_records": stats.skipped_records, "truncated_files": stats.truncated_files}
    return out


def format_stats(stats: dict[str, dict[str, Any]]) -> str:
    """A table: one row per dataset and a total row."""
    head = f"{'dataset':<14}{'episodes':>9}{'steps':>8}" + "".join(f"{k:>11}" for k in KINDS)
    rows = [head, "-" * len(head)]
    total = Counter()
    for name, s in stats.items():
        rows.append(f"{name:<14}{s['episodes']:>9}{s['steps']:>8}" + "".join(f"{s['actions'][k]:>11}" for k in KINDS))
        total.update({"episodes": s["episodes"], "steps": s["steps"], **s["actions"]})
    rows.append("-" * len(head))
    rows.append(f"{'total':<14}{total['episodes']:>9}{total['steps']:>8}" + "".join(f"{total[k]:>11}" for k in KINDS))
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    """Count, print the table, and write JSON when asked."""
    from autoui.data.aitw import CorruptRecordError

    try:
        stats = collect_stats(args.data, skip_corrupt=args.skip_corrupt)
    except CorruptRecordError as exc:
        raise CLIError(f"{exc}; rerun with --skip-corrupt to skip damaged records") from None
    print(format_stats(stats))
    skipped = sum(s["skipped_records"] for s in stats.values())
    truncated = sum(s["truncated_files"] for s in stats.values())
    if skipped or truncated:
        print(f"skipped: {skipped} bad records, {truncated} shards with a broken tail")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        print(f"stats written to {args.json}")
    return 0
