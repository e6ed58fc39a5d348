#!/usr/bin/env python3
"""Benchmark AITW evaluation: reading shards, parsing predictions, matching, and `autoui eval-aitw` end to end.

    .venv/bin/python train/bench_eval.py [--episodes-per-dataset 200] [--repeats 3] [--out out/bench_eval.json]

Generates synthetic AITW-schema shards (~5,000 steps by default, small screenshots) in a
temporary folder, times each stage (median of --repeats runs), writes a JSON and prints a table.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from autoui.cli import main as cli_main  # noqa: E402
from autoui.data.aitw import dataset_dirs, iter_steps  # noqa: E402
from autoui.data.synthetic import generate_dataset, generate_predictions  # noqa: E402
from autoui.metrics import Evaluator, load_predictions, match_actions  # noqa: E402


def _time(fn, repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of `fn()` over `repeats` runs.

    CPU (process) time is reported too because this machine is shared: wall time includes
    waiting for a core, CPU time does not.
    """
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def _score(steps, preds) -> None:
    ev = Evaluator(preds)
    for s in steps:
        ev.add(s)
    ev.result()


def run(episodes_per_dataset: int, repeats: int, seed: int) -> dict:
    """Generate the data in a temp folder and time every stage."""
    with tempfile.TemporaryDirectory() as tmp:
        root, pred_file, out = Path(tmp) / "aitw", Path(tmp) / "preds.jsonl", Path(tmp) / "m.json"
        summary = generate_dataset(root, episodes_per_dataset, seed=seed)
        generate_predictions(root, pred_file, seed=seed)
        dirs = list(dataset_dirs(root).values())
        steps = list(iter_steps(dirs))
        preds = load_predictions(pred_file)
        refs, boxes = [s.action for s in steps], [s.ui_positions for s in steps]
        shard_bytes = sum(p.stat().st_size for d in dirs for p in d.iterdir())
        args = ["eval-aitw", "--data", str(root), "--predictions", str(pred_file), "--out", str(out)]

        def cli() -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                assert cli_main(args) == 0

        stages = {
            "read_shards": lambda: sum(1 for _ in iter_steps(dirs)),
            "load_predictions": lambda: load_predictions(pred_file),
            "match_actions": lambda: match_actions(refs, refs, boxes),
            "score": lambda: _score(steps, preds),
            "cli_end_to_end": cli,
        }
        timings = {name: _time(fn, repeats) for name, fn in stages.items()}
    n = len(steps)
    return {
        "device": f"{platform.processor() or platform.machine()}, 2-core CPU, no GPU",
        "date": date.today().isoformat(),
        "python": platform.python_version(),
        "steps": n,
        "episodes": sum(s["episodes"] for s in summary.values()),
        "shard_mb": round(shard_bytes / 1e6, 2),
        "repeats": repeats,
        "seconds": {k: {"wall": round(w, 4), "cpu": round(c, 4)} for k, (w, c) in timings.items()},
        "cli_steps_per_cpu_s": round(n / timings["cli_end_to_end"][1]),
        "score_steps_per_cpu_s": round(n / timings["score"][1]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes-per-dataset", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("out/bench_eval.json"))
    args = parser.parse_args()
    result = run(args.episodes_per_dataset, args.repeats, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        if key != "seconds":
            print(f"{key:<22}{value}")
    print(f"\n{'stage':<22}{'wall s':>10}{'cpu s':>10}{'cpu ms/step':>13}")
    for stage, t in result["seconds"].items():
        print(f"{stage:<22}{t['wall']:>10.3f}{t['cpu']:>10.3f}{1000 * t['cpu'] / result['steps']:>13.4f}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
