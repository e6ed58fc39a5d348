"""Does a model tap the right element on screens it trained on, and on new ones?

For each task, the share of tap steps whose predicted tap lands inside the target's element
box (`autoui.metrics.matching.taps_in_target_box`: the smallest box holding the expert's
tap), on the first N tap steps of that task's training shards and of its held-out shards.
A large train - held-out gap means the model memorised screens; a low train rate means it
has not even fitted them. No training; greedy decoding as `train/eval_aitw.py` does.

    python train/probe_generalization.py --model runs/miniwob-area/final \
        --train data/miniwob-area/train --heldout data/miniwob-area/heldout \
        --tasks click-test-2,identify-shape --steps 48 --json out.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from autoui.actions import ActionParseError, parse_action
from autoui.agent import load_agent, trained_limits
from autoui.data.aitw import read_episodes
from autoui.data.samples import make_samples
from autoui.data.stream import episode_task, resolve_shards
from autoui.metrics.matching import taps_in_target_box
from autoui.train.predict import batched, predict_texts


def tap_samples(data: str, task: str, n: int, history: int) -> list:
    """The first `n` tap steps of `task` in the shards under `data` (shards in name order)."""
    out = []
    for shard in resolve_shards(data):
        if not Path(shard).name.startswith(f"{task}-"):
            continue
        for episode in read_episodes([shard]):
            if episode_task(episode.episode_id, episode.dataset) != task:
                continue
            out.extend(s for s in make_samples(episode, history=history) if s.target.is_tap)
        if len(out) >= n:
            break
    return out[:n]


def hit_rate(model, tok, samples: list, limits, batch: int) -> float | None:
    """Percent of `samples` whose predicted tap is inside the target's box (None: no eligible step)."""
    preds = []
    for chunk in batched(samples, batch):
        for text in predict_texts(model, tok, chunk, limits=limits):
            try:
                preds.append(parse_action(text).action)
            except ActionParseError:
                preds.append(None)
    eligible, hit = taps_in_target_box(preds, [s.target for s in samples], [s.ui_positions for s in samples])
    return round(100.0 * hit[eligible].sum() / eligible.sum(), 1) if eligible.any() else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--train", required=True, help="the training demonstrations (AITW-schema shards)")
    ap.add_argument("--heldout", required=True, help="held-out demonstrations of the same tasks")
    ap.add_argument("--tasks", required=True, help="comma-separated task names")
    ap.add_argument("--steps", type=int, default=48, help="tap steps per task and split")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = load_agent(args.model, dtype="float32")
    limits = trained_limits(args.model)
    rows = {}
    print(f"{'task':24s} {'train':>14s} {'held-out':>14s}   (% of taps inside the target's box, steps)")
    for task in args.tasks.split(","):
        row = {}
        for split, data in (("train", args.train), ("heldout", args.heldout)):
            samples = tap_samples(data, task, args.steps, limits.max_history)
            row[split] = {"hit_pct": hit_rate(model, tok, samples, limits, args.batch_size) if samples else None,
                          "steps": len(samples)}
        rows[task] = row
        print(f"{task:24s} " + " ".join(f"{str(row[s]['hit_pct']):>9s} ({row[s]['steps']:3d})"
                                         for s in ("train", "heldout")), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "train": args.train, "heldout": args.heldout,
                                               "tasks": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
