"""Time the per-step input work: screen preprocessing and prompt building (no model).

For each screen shape (phone, tall phone, browser, MiniWoB) and image size, the median
time of `ScreenPreprocessor.__call__` on a random uint8 screenshot; then the median time of
`build_inputs` for an 8-action history in both formats with the shipped tokenizer.
Writes a JSON (default train/results/bench_preprocess.json) and prints a table.

    .venv/bin/python train/bench_preprocess.py [--repeats 50] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from autoui.model.config import load_preset
from autoui.model.preprocess import ScreenPreprocessor
from autoui.model.prompt import build_inputs
from autoui.model.tokenizer import ActionTokenizer
from autoui.model.tokenizer_corpus import random_action

SHAPES = {"phone 1080x2400": (2400, 1080), "phone 1440x3120": (3120, 1440),
          "browser 1280x800": (800, 1280), "miniwob 160x210": (210, 160)}


def median_ms(fn, repeats: int) -> float:
    """Median wall time of `fn()` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 384])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (preprocessing itself is numpy/PIL)")
    parser.add_argument("--out", default="train/results/bench_preprocess.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    device = f"{platform.machine()} CPU ({torch.get_num_threads()} torch threads)"
    results: dict = {"date": time.strftime("%Y-%m-%d"), "device": device,
                     "repeats": args.repeats, "preprocess_ms": {}, "build_inputs_ms": {}}
    for name, (h, w) in SHAPES.items():
        screen = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for size in args.sizes:
            pre = ScreenPreprocessor(size)
            results["preprocess_ms"][f"{name} -> {size}"] = median_ms(lambda: pre(screen), args.repeats)
    tok = ActionTokenizer.load()
    config = load_preset("tiny").with_tokenizer(tok)
    action_rng = random.Random(3)
    history = [random_action(action_rng) for _ in range(8)]
    goal = "Go to amazon.com, search for \"logitech g pro\", and select the first entry"
    for fmt in ("compact", "autoui"):
        ids = build_inputs(tok, config, goal, history, fmt)
        results["build_inputs_ms"][fmt] = {"ms": median_ms(lambda: build_inputs(tok, config, goal, history, fmt),
                                                           args.repeats), "text_tokens": len(ids) - 1 - config.num_image_tokens}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'preprocess (median ms)':32s}" + "".join(f"{s:>10d}" for s in args.sizes))
    for name in SHAPES:
        print(f"{name:32s}" + "".join(f"{results['preprocess_ms'][f'{name} -> {s}']:>10.2f}" for s in args.sizes))
    for fmt, r in results["build_inputs_ms"].items():
        print(f"build_inputs {fmt:8s} 8 history: {r['ms']:.3f} ms, {r['text_tokens']} text tokens")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
