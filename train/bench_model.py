"""Benchmark the model presets on this machine: parameter counts, forward latency, greedy decode.

One agent step's prefill = one screenshot + PROMPT_TOKENS text tokens, batch 1; the decode
is `generate_greedy` (the reference path, no KV cache) for DECODE_TOKENS tokens. Writes a
JSON file and prints a table. GPU-sized presets get parameter counts only unless `--large`
(then one cold prefill is timed; their decode is never timed on CPU).

    .venv/bin/python train/bench_model.py                 # all presets, JSON to runs/bench/model.json
    .venv/bin/python train/bench_model.py --presets default --threads 2 --repeats 20
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

try:
    import autoui  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoui.model import AutoUIModel, ModelConfig, list_presets, load_preset

PROMPT_TOKENS = 80
DECODE_TOKENS = 16
LARGE_PARAMS = 200_000_000


def param_counts(cfg: ModelConfig) -> dict[str, int]:
    """Parameters per part, counted on the meta device (no memory used)."""
    with torch.device("meta"):
        model = AutoUIModel(cfg)
    parts = {"vision": model.vision, "projector": model.projector, "decoder": model.decoder}
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
    counts["lm_head"] = 0 if model.lm_head is None else model.lm_head.weight.numel()
    counts["total"] = sum(counts.values())
    return counts


def make_inputs(cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A random screenshot and a prompt: bos, image tokens, PROMPT_TOKENS text tokens."""
    g = torch.Generator().manual_seed(0)
    text = torch.randint(5, cfg.decoder.vocab_size, (PROMPT_TOKENS,), generator=g)
    ids = torch.cat([torch.full((cfg.num_image_tokens,), cfg.image_token_id), text])
    return torch.randn(1, 3, cfg.image_size, cfg.image_size, generator=g), ids[None]


def time_ms(fn, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median / min wall time of `fn()` in ms, and median process CPU time.

    On a shared, busy machine wall time mostly measures the neighbours; CPU time (all
    threads of this process) divided by the thread count approximates the wall time
    the same work takes on an idle machine.
    """
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - cpu_start) * 1000)
    return {"median_ms": round(statistics.median(wall), 2), "min_ms": round(min(wall), 2),
            "cpu_median_ms": round(statistics.median(cpu), 2), "runs": repeats}


def prefill(model: AutoUIModel, px: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """One agent step's prefill: embed, run the decoder, logits of the last position only."""
    return model.logits(model.decoder(model.embed(px, ids))[:, -1])  # [1, V]


def bench_preset(name: str, repeats: int, large: bool) -> dict:
    """Numbers for one preset."""
    cfg = load_preset(name)
    row: dict = {"preset": name, "params": param_counts(cfg), "image_tokens": cfg.num_image_tokens,
                 "seq_len": cfg.num_image_tokens + PROMPT_TOKENS}
    is_large = row["params"]["total"] > LARGE_PARAMS
    if is_large and not large:
        return row
    torch.manual_seed(0)
    model = AutoUIModel(cfg).eval()
    px, ids = make_inputs(cfg)
    with torch.inference_mode():
        if is_large:  # one cold prefill: each takes many seconds on a CPU
            row["prefill"] = time_ms(lambda: prefill(model, px, ids), 1, warmup=0)
            return row
        row["vision"] = time_ms(lambda: model.encode_images(px), repeats)
        row["prefill"] = time_ms(lambda: prefill(model, px, ids), repeats)
        row["forward"] = time_ms(lambda: model(px, ids), repeats)
        # eos -1 never matches: always DECODE_TOKENS steps
        row["greedy16"] = time_ms(lambda: model.generate_greedy(px, ids, max_new_tokens=DECODE_TOKENS, eos_token_id=-1),
                                  max(3, repeats // 5), warmup=1)
    return row


def print_table(rows: list[dict], threads: int) -> None:
    """One line per preset: wall ms (CPU ms / threads in brackets)."""
    def ms(row: dict, key: str) -> str:
        if key not in row:
            return "-"
        return f"{row[key]['median_ms']:.1f} ({row[key]['cpu_median_ms'] / threads:.1f})"

    print(f"{'preset':26} {'params':>12} {'vision':>10} {'decoder':>11} {'img':>4} "
          f"{'vision ms':>15} {'prefill ms':>15} {'forward ms':>15} {'greedy16 ms':>17}")
    for r in rows:
        p = r["params"]
        print(f"{r['preset']:26} {p['total']:>12,} {p['vision']:>10,} {p['decoder'] + p['lm_head']:>11,} "
              f"{r['image_tokens']:>4} {ms(r, 'vision'):>15} {ms(r, 'prefill'):>15} {ms(r, 'forward'):>15} "
              f"{ms(r, 'greedy16'):>17}")
    print("wall-clock median ms (process CPU ms / threads: the idle-machine estimate)")


def main() -> None:
    """Parse flags, run, write JSON, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="*", default=None, help="preset names (default: all in models/)")
    ap.add_argument("--repeats", type=int, default=10, help="timed runs per measurement (median reported)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    ap.add_argument("--large", action="store_true", help="also time one cold prefill of GPU-sized presets")
    ap.add_argument("--out", default="runs/bench/model.json", help="JSON output path")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = args.presets or list_presets()
    rows = [bench_preset(n, args.repeats, args.large) for n in names]
    meta = {"date": time.strftime("%Y-%m-%d"), "device": f"CPU ({os.cpu_count()} cores), no GPU"
            if not torch.cuda.is_available() else torch.cuda.get_device_name(), "threads": args.threads,
            "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
            "load_avg_1m": round(os.getloadavg()[0], 2), "prompt_tokens": PROMPT_TOKENS, "decode_tokens": DECODE_TOKENS}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "presets": rows}, indent=2) + "\n")
    print_table(rows, args.threads)
    print(f"\n{meta}\nwrote {out}")


if __name__ == "__main__":
    main()
