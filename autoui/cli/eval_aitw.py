"""`autoui eval-aitw`: score a predictions file against AITW shards with the official action-matching metric.

    autoui eval-aitw --data data/aitw --predictions preds.jsonl --out metrics.json \
        [--split-file splits.json --split test] [--skip-corrupt]

`--data` holds one folder of shards per dataset (general, google_apps, install, single,
web_shopping; any subset). Each predictions line is
`{"episode_id": "...", "step_id": 0, "prediction": "<action text, Auto-UI or compact>"}`.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from autoui.cli import CLIError

log = logging.getLogger("autoui.cli.eval_aitw")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `eval-aitw` command."""
    p = subparsers.add_parser(
        "eval-aitw", help="score predictions on AITW (action match, type, text, episode success)",
        description="Score predictions on AITW shards with the official action-matching rule.")
    p.add_argument("--data", required=True, metavar="ROOT", help="folder with one sub-folder of shards per dataset")
    p.add_argument("--predictions", required=True, metavar="FILE", help="JSON lines: episode_id, step_id, prediction")
    p.add_argument("--out", required=True, metavar="METRICS.json", help="where to write the metrics JSON")
    p.add_argument("--split-file", metavar="F", help="JSON split file (label -> episode ids, or a list of ids)")
    p.add_argument("--split", metavar="LABEL", help="which split of --split-file to evaluate (e.g. test)")
    p.add_argument("--skip-corrupt", action="store_true", help="skip and count damaged records instead of failing")
    p.set_defaults(handler=run)


def load_split_filter(split_file: str | None, split: str | None) -> frozenset[str] | None:
    """The episode ids selected by --split-file/--split, or None for all (CLIError on bad input)."""
    from autoui.data.splits import SplitError, split_ids

    if split and not split_file:
        raise CLIError("--split needs --split-file")
    if not split_file:
        return None
    try:
        return split_ids(split_file, split)
    except SplitError as exc:
        raise CLIError(str(exc)) from None


def data_dirs(root: str) -> dict[str, Path]:
    """The dataset folders under ROOT (CLIError when there are none)."""
    from autoui.data.aitw import dataset_dirs

    try:
        return dataset_dirs(root)
    except FileNotFoundError as exc:
        raise CLIError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    """Read the shards, score the predictions, write the JSON and print a table."""
    from tqdm import tqdm

    from autoui.data.aitw import CorruptRecordError, ReadStats, iter_steps
    from autoui.data.splits import filter_by_ids
    from autoui.metrics import Evaluator, PredictionsError, format_table, load_predictions

    dirs = data_dirs(args.data)
    ids = load_split_filter(args.split_file, args.split)
    try:
        predictions = load_predictions(args.predictions)
    except PredictionsError as exc:
        raise CLIError(str(exc)) from None
    log.info("datasets %s; %d predictions", ", ".join(dirs), len(predictions))
    stats = ReadStats()
    steps = iter_steps(list(dirs.values()), skip_corrupt=args.skip_corrupt, stats=stats)
    if ids is not None:
        steps = filter_by_ids(steps, ids)
    evaluator = Evaluator(predictions)
    try:
        for step in tqdm(steps, desc="scoring", unit=" steps", disable=None):
            evaluator.add(step)
    except CorruptRecordError as exc:
        raise CLIError(f"{exc}; rerun with --skip-corrupt to skip damaged records") from None
    result = evaluator.result()
    if not result["subsets"]:
        raise CLIError("no steps to evaluate" + (f" in split {args.split!r}" if ids is not None else ""))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(format_table(result))
    _report_problems(evaluator.unknown, stats)
    print(f"metrics written to {out}")
    return 0


def _report_problems(unknown: list[tuple[str, int]], stats) -> None:
    if unknown:
        log.warning("%d predictions name no evaluated step (e.g. episode %s step %d); they were ignored",
                    len(unknown), unknown[0][0], unknown[0][1])
        print(f"unknown predictions (ignored): {len(unknown)}")
    if stats.skipped_records or stats.truncated_files:
        print(f"skipped: {stats.skipped_records} bad records, {stats.truncated_files} shards with a broken tail")
