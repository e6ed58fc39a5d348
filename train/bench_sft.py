"""Benchmark supervised fine-tuning throughput (samples/s, tokens/s, achieved FLOP/s) on this machine.

Runs the real `Trainer` (train/sft.py's loop) on synthetic AITW shards for a few steps per
preset and setting, drops the warm-up steps, and reports medians. Writes a JSON file and
prints a table. FLOPs per sample use the usual 6 x params x tokens for trained parts and
2 x params x tokens for a frozen vision tower (0 when its features come from the cache);
attention's quadratic term is left out (prompts are a few hundred tokens).

    .venv/bin/python train/bench_sft.py                                  # tiny preset
    .venv/bin/python train/bench_sft.py --presets tiny,siglip-base-qwen2-0.5b --steps 3 --batch-size 1
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

try:
    import autoui  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoui.data.synthetic import generate_dataset
from autoui.train.config import TrainConfig
from autoui.train.loop import METRICS_FILE, Trainer

SETTINGS = {"full": {}, "frozen": {"freeze_vision": True},
            "frozen+cache": {"freeze_vision": True, "cache_vision_features": True}}


def flops_per_sample(trainer: Trainer, tokens_per_sample: float, setting: str) -> float:
    """Approximate training FLOPs of one sample (see the module docstring)."""
    m = trainer.raw
    n_vis = sum(p.numel() for p in m.vision.parameters())
    # embeddings are a lookup; the (tied) lm_head runs on target tokens only: both left out
    n_dec = sum(p.numel() for p in m.decoder.parameters()) - m.decoder.embed_tokens.weight.numel()
    n_proj = sum(p.numel() for p in m.projector.parameters())
    patches = m.config.vision.num_positions
    vision = {"full": 6, "frozen": 2, "frozen+cache": 0}[setting] * n_vis * patches
    return vision + 6 * n_proj * m.config.num_image_tokens + 6 * n_dec * tokens_per_sample


def read_throughput(data: Path) -> dict:
    """Steps/s and decompressed MB/s of reading + decoding the shards (what resuming and sampling re-read)."""
    from autoui.data.aitw import iter_steps
    from autoui.data.stream import resolve_shards

    t0, n, nbytes = time.perf_counter(), 0, 0
    for step in iter_steps(resolve_shards(data)):
        n += 1
        nbytes += step.image.nbytes
    dt = time.perf_counter() - t0
    return {"steps": n, "steps_per_s": round(n / dt, 1), "image_mb_per_s": round(nbytes / dt / 1e6, 1)}


def bench_one(data: Path, preset: str, setting: str, args: argparse.Namespace, work: Path) -> dict:
    """Train `args.steps` steps; median throughput over the steps after `args.warmup_steps`."""
    out = work / f"{preset}-{setting}"
    cfg = TrainConfig(preset=preset, data=(str(data),), out=str(out), steps=args.steps, batch_size=args.batch_size,
                      warmup=1, workers=args.workers, shuffle_buffer=64, **SETTINGS[setting])
    trainer = Trainer(cfg)
    cpu: list[float] = []  # CPU seconds (all threads) per step: robust to other jobs sharing the machine
    step = trainer.train_step

    def timed_step(it):
        t0 = time.process_time()
        out = step(it)
        cpu.append(time.process_time() - t0)
        return out

    trainer.train_step = timed_step
    trainer.train()
    cpu_per_sample = statistics.median(cpu[args.warmup_steps:]) / args.batch_size
    rows = [json.loads(x) for x in (out / METRICS_FILE).read_text().splitlines()]
    rows = [r for r in rows if r["kind"] == "train"][args.warmup_steps:]
    sps = statistics.median(r["samples_per_s"] for r in rows)
    tps = statistics.median(r["tokens_per_s"] for r in rows)
    flops = flops_per_sample(trainer, tps / sps, setting)
    return {"preset": preset, "setting": setting, "params": trainer.raw.num_parameters(),
            "batch_size": args.batch_size, "steps_timed": len(rows), "tokens_per_sample": round(tps / sps, 1),
            "samples_per_s": round(sps, 3), "tokens_per_s": round(tps, 1),
            "train_flops_per_sample": flops, "achieved_gflops": round(sps * flops / 1e9, 2),
            "cpu_s_per_sample": round(cpu_per_sample, 4), "gflop_per_cpu_s": round(flops / cpu_per_sample / 1e9, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="tiny")
    p.add_argument("--settings", default="full,frozen,frozen+cache", help=f"comma list of {list(SETTINGS)}")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup-steps", type=int, default=5, help="steps left out of the medians")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", default="runs/bench/sft.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        # few screenshots, many steps: the cached setting reaches its steady state (all hits)
        generate_dataset(data, episodes_per_dataset=4, seed=0, shards=2)
        reading = read_throughput(data)
        for preset in args.presets.split(","):
            for setting in args.settings.split(","):
                results.append(bench_one(data, preset, setting, args, Path(tmp)))
    report = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
              "device": "cuda" if torch.cuda.is_available() else "cpu", "torch": torch.__version__,
              # a shared machine: other jobs' load skews CPU timings, so record it with them
              "load_average_1m_at_end": round(os.getloadavg()[0], 2), "read": reading, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'preset':<24}{'setting':<14}{'params':>12}{'tok/sample':>11}{'samples/s':>11}{'tokens/s':>10}"
          f"{'GFLOP/s':>9}{'cpu-s/sample':>13}{'GFLOP/cpu-s':>12}")
    for r in results:
        print(f"{r['preset']:<24}{r['setting']:<14}{r['params']:>12,}{r['tokens_per_sample']:>11}"
              f"{r['samples_per_s']:>11}{r['tokens_per_s']:>10}{r['achieved_gflops']:>9}"
              f"{r['cpu_s_per_sample']:>13}{r['gflop_per_cpu_s']:>12}")
    print(f"reading+decoding shards: {reading['steps_per_s']} steps/s, {reading['image_mb_per_s']} MB/s of pixels")
    print(f"load average (1 min) at the end: {report['load_average_1m_at_end']} on {os.cpu_count()} cores")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
