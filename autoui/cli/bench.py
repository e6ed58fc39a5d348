"""`autoui bench runtime`: the serving runtime against HF transformers generate(), in one run.

    autoui bench runtime --model models/default-model --json runs/bench/runtime_vs_hf.json \\
        [--data data/miniwob/heldout/miniwob] [--batches 1,8,32] [--device cpu|cuda] [--threads N]

Same weights (exported with `autoui export-hf` logic), same held-out prompts and
screenshots, greedy, same max_new_tokens and threads. Measures batch-1 step latency
(p50/p95), steps/s per batch size, peak memory, KV bytes per token per cache kind, and
the action-match change of each quantized KV cache against the plain one. Writes the
JSON and prints a table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from autoui.cli import CLIError

DEFAULT_DATA = Path("data/miniwob/heldout/miniwob")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `bench` command (one target for now: `runtime`)."""
    p = subparsers.add_parser("bench", help="benchmarks (runtime vs HF generate)", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", choices=("runtime",), help="what to benchmark")
    p.add_argument("--model", type=Path, default=None, help="model directory (default: models/default-model)")
    p.add_argument("--json", type=Path, required=True, help="write the results here")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="held-out TFRecord shards (folder, file or glob)")
    p.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes for steps/s")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="the runtime's weights (auto: bf16 on CUDA, fp32 + bf16 prefill on CPUs with bf16 matmuls: AMX, AVX512-BF16); "
                        "HF runs fp32 and, if different, this")
    p.add_argument("--threads", type=int, default=0, help="torch threads for every method (0: torch's default)")
    p.add_argument("--eval-steps", type=int, default=64, help="held-out steps scored for action match")
    p.add_argument("--latency-steps", type=int, default=24, help="batch-1 steps timed per method")
    p.add_argument("--repeats", type=int, default=3, help="timed batches per batch size (median)")
    p.add_argument("--max-new-tokens", type=int, default=24, help="generation limit for every method")
    p.add_argument("--format", dest="fmt", choices=("compact", "autoui"), default="compact",
                   help="action format the model was trained with")
    p.add_argument("--no-hf", action="store_true", help="skip HF generate (runtime numbers only)")
    p.add_argument("--no-hf-quantized", action="store_true", help="skip HF's quantized caches")
    p.set_defaults(handler=run)


def _batches(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError:
        raise CLIError(f"--batches must be comma-separated ints, got {text!r}") from None
    if not out or min(out) < 1:
        raise CLIError(f"--batches must be positive ints, got {text!r}")
    return out


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table, write the JSON. Returns the exit code."""
    from autoui.agent import DEFAULT_MODEL_DIR, default_model_dir
    from autoui.runtime.bench import BenchConfig, BenchError
    from autoui.runtime.bench_run import format_table, run_bench

    model = args.model or default_model_dir()
    if model is None:
        raise CLIError(f"no --model given and no shipped model in {DEFAULT_MODEL_DIR}")
    try:
        cfg = BenchConfig(model=model, data=args.data, batches=_batches(args.batches), device=args.device,
                          threads=args.threads, dtype=args.dtype, eval_steps=args.eval_steps,
                          latency_steps=args.latency_steps,
                          repeats=args.repeats, max_new_tokens=args.max_new_tokens, fmt=args.fmt,
                          hf=not args.no_hf, hf_quantized=not args.no_hf_quantized)
        result = run_bench(cfg)
    except BenchError as exc:
        raise CLIError(str(exc)) from None
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(format_table(result))
    return 0
