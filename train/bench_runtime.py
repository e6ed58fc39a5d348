"""Benchmark the inference runtime on this machine: KV memory, quantization error,
attention backends, quantized-cache decode, constrained-decoding overhead, engine speed.

Shapes follow the siglip-base-qwen2-0.5b preset's decoder (14 query heads, 2 KV heads,
head_dim 64) and one agent step (a ~400-token prompt, short decode). Times are medians
of repeated runs after warm-up. Writes a JSON file and prints a table.

    .venv/bin/python train/bench_runtime.py                      # JSON to runs/bench/runtime.json
    .venv/bin/python train/bench_runtime.py --quick --threads 2  # fewer repeats, no 0.5B engine run

These are the runtime's micro-benchmarks (phase 1). The end-to-end comparison with HF
transformers generate() on a trained model is `autoui bench runtime` (autoui/runtime/bench.py).
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

from autoui.model import AutoUIModel, load_preset
from autoui.runtime import ActionConstraint, CacheConfig, make_cache
from autoui.runtime.attention import reference_attention, sdpa_attention
from autoui.runtime.cache import quant
from autoui.runtime.engine import Engine, EngineConfig, Request

HQ, HKV, D = 14, 2, 64
KINDS = ("plain", "int8", "int4", "fp8")


def timed(fn, repeats: int, warmup: int = 2) -> str:
    """Wall time of `fn()` in ms as "median (min)": on a shared CPU the minimum shows the
    intrinsic cost, the median what a busy machine gives."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return f"{_fmt(statistics.median(times))} ({_fmt(min(times))})"


def _fmt(ms: float) -> str:
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _median(cell: str) -> float:
    return float(cell.split()[0])


def bench_memory() -> dict:
    """Bytes per token (all layers, K+V, scales) per kind and preset, and the ratio to bf16."""
    out = {}
    for preset in ("siglip-base-qwen2-0.5b", "clip-l336-tinyllama-1.1b"):
        dec = load_preset(preset).decoder
        sizes = {k: make_cache(CacheConfig.for_decoder(dec, kind=k, dtype="bfloat16", max_batch=1, max_seq_len=8))
                 .bytes_per_token() for k in KINDS}
        out[preset] = {k: {"bytes_per_token": v, "vs_bf16": round(v / sizes["plain"], 4)} for k, v in sizes.items()}
    return out


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return round(((a - b).norm() / b.norm()).item(), 5)


def bench_quant_error() -> dict:
    """Relative reconstruction error of each scheme, and of decode attention vs the plain cache."""
    g = torch.Generator().manual_seed(0)
    gauss = torch.randn(4096, HKV, D, generator=g)
    offsets = torch.randn(D, generator=g) * 2
    offsets[[3, 17]] = 8.0  # outlier channels, as post-RoPE keys have
    keys = torch.randn(4096, HKV, D, generator=g) + offsets
    schemes = {
        "int8": lambda x: quant.dequantize_int8(*quant.quantize_int8(x, torch.float16), torch.float32),
        "fp8": lambda x: quant.dequantize_fp8(*quant.quantize_fp8(x, torch.float16), torch.float32),
        "int4_asym": lambda x: quant.dequantize_int4(*quant.quantize_int4(x, 32, torch.float16), 32, torch.float32),
        "int4_sym": lambda x: quant.dequantize_int4(*quant.quantize_int4(x, 32, torch.float16, symmetric=True),
                                                    32, torch.float32),
    }
    out = {name: {"gaussian": _rel(f(gauss), gauss), "keys_with_outlier_channels": _rel(f(keys), keys)}
           for name, f in schemes.items()}
    q = torch.randn(1, HQ, 1, D, generator=g)
    k, v = keys[None, :1024], torch.randn(1, 1024, HKV, D, generator=g)
    base = reference_attention(q, k, v, "none", None)
    for name in ("int8", "fp8", "int4_asym"):
        out[name]["decode_attention_output"] = _rel(reference_attention(q, schemes[name](k), schemes[name](v),
                                                                        "none", None), base)
    return out


def _sdpa_repeat(q, k, v, kind, mask):
    """SDPA with K/V repeated to the query heads (what the model's no-cache path does)."""
    rep = q.shape[1] // k.shape[2]
    return sdpa_attention(q, k.repeat_interleave(rep, 2), v.repeat_interleave(rep, 2), kind, mask)


def bench_attention(repeats: int) -> list[dict]:
    """Dense backends on CPU: prefill (causal) and decode (padded batch with a mask / without)."""
    rows = []
    g = torch.Generator().manual_seed(0)
    cases = [("prefill B=1 T=400", 1, 400, 400, "causal"), ("prefill B=4 T=400 ragged", 4, 400, 400, "explicit"),
             ("decode B=1 L=512", 1, 1, 512, "none"), ("decode B=8 L=512 ragged", 8, 1, 512, "explicit")]
    for dtype in (torch.float32, torch.bfloat16):
        for name, B, T, L, kind in cases:
            q = torch.randn(B, HQ, T, D, generator=g).to(dtype)
            k, v = (torch.randn(B, L, HKV, D, generator=g).to(dtype) for _ in range(2))
            mask = None
            if kind == "explicit":
                lens = torch.randint(L // 2, L + 1, (B,), generator=g)
                pos = (lens - T)[:, None] + torch.arange(T)[None]
                j = torch.arange(L)
                mask = ((j <= pos[..., None]) & (j < lens[:, None, None]))[:, None]
            row = {"case": name, "dtype": str(dtype).replace("torch.", "")}
            for backend, fn in (("reference", reference_attention), ("sdpa_gqa", sdpa_attention),
                                ("sdpa_repeat_kv", _sdpa_repeat)):
                row[backend + "_ms"] = timed(lambda: fn(q, k, v, kind, mask), repeats)
            rows.append(row)
    return rows


def bench_cached_decode(repeats: int) -> list[dict]:
    """One decode step of one layer through each cache: write + (dequantize prefix) + attention.

    The pool has 32 slots x 1024 tokens; 8 sequences of 512 tokens are active. The
    "whole pool" column dequantizes every slot and token instead (what a cache that
    restores everything each step would pay).
    """
    rows = []
    g = torch.Generator().manual_seed(0)
    for kind in KINDS:
        cache = make_cache(CacheConfig(kind=kind, n_layers=1, n_kv_heads=HKV, head_dim=D, max_batch=32,
                                       max_seq_len=1024, attention="sdpa"))
        slots = cache.allocate(32)[::4]  # 8 non-contiguous slots: the gather path
        cache.view(slots, [511] * 8).attend(0, torch.randn(8, HQ, 511, D, generator=g),
                                            *(torch.randn(8, HKV, 511, D, generator=g) for _ in range(2)))
        q, k, v = torch.randn(8, HQ, 1, D), torch.randn(8, HKV, 1, D), torch.randn(8, HKV, 1, D)

        def step():
            view = cache.view(slots)
            view.attend(0, q, k, v)
            cache.lengths[slots] -= 1  # rewind so every repeat sees 512 keys

        row = {"cache": kind, "decode_step_ms": timed(step, repeats)}
        whole = slice(0, 32)
        row["dequantize_whole_pool_ms"] = timed(lambda: cache._gather(0, whole, 1024, torch.float32),
                                                max(3, repeats // 4))
        rows.append(row)
    return rows


def bench_constrained(repeats: int) -> list[dict]:
    """Compile time and per-step cost (mask + advance) with the shipped tokenizer."""
    from autoui.model.tokenizer import ActionTokenizer

    tok = ActionTokenizer.load()
    rows = []
    for fmt in ("compact", "autoui", "any"):
        t = time.perf_counter()
        c = ActionConstraint.from_tokenizer(tok, fmt)
        compile_s = time.perf_counter() - t
        for B in (1, 8, 32):
            logits = torch.randn(B, tok.vocab_size)
            first = tok.encode("tap" if fmt != "autoui" else '"action_type"')[0]

            def step(remaining=None):
                state = c.start(B)
                state.mask_logits(logits, remaining)
                state.advance([first] * B)

            rows.append({"format": fmt, "vocab": tok.vocab_size, "states": c.masks.shape[0],
                         "compile_s": round(compile_s, 2), "batch": B,
                         "step_ms": timed(step, repeats),
                         "step_near_budget_ms": timed(lambda: step(c.min_new_tokens), repeats),
                         "mask_table_MB": round(c.masks.numel() / 2**20, 2)})
    return rows


def bench_engine(presets: list[str], new_tokens: int, repeats: int) -> list[dict]:
    """Engine (KV cache) vs the model's reference generate_greedy (no cache), batch 1, one agent step."""
    rows = []
    for preset in presets:
        torch.manual_seed(0)
        cfg = load_preset(preset)
        if cfg.bos_token_id is None:  # GPU-sized presets take their ids from the shipped tokenizer
            from autoui.model.tokenizer import ActionTokenizer

            cfg = cfg.with_tokenizer(ActionTokenizer.load())
        model = AutoUIModel(cfg).eval()
        g = torch.Generator().manual_seed(0)
        ids = [cfg.bos_token_id] + [cfg.image_token_id] * cfg.num_image_tokens + \
            torch.randint(5, cfg.decoder.vocab_size, (200,), generator=g).tolist()
        px = torch.randn(3, cfg.image_size, cfg.image_size, generator=g)
        row = {"preset": preset, "prompt_tokens": len(ids), "new_tokens": new_tokens}
        with torch.no_grad():
            row["reference_greedy_ms"] = timed(lambda: model.generate_greedy(
                px[None], torch.tensor([ids]), max_new_tokens=new_tokens, eos_token_id=-1), repeats, 1)
            for kind in ("plain", "int8"):
                engine = Engine(model, EngineConfig(max_batch=1, max_seq_len=len(ids) + new_tokens,
                                                    cache_kind=kind, max_new_tokens=new_tokens))
                engine.eos_id = -1  # never stop early: time exactly new_tokens tokens
                row[f"engine_{kind}_ms"] = timed(lambda: engine.generate([Request(ids, px)]), repeats, 1)
        row["speedup_plain (medians)"] = round(_median(row["reference_greedy_ms"]) / _median(row["engine_plain_ms"]), 2)
        rows.append(row)
    return rows


def _table(title: str, rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = [f"\n== {title} (times: median (min) ms)" if "ms" in " ".join(keys) else f"\n== {title}",
             " | ".join(keys)]
    lines += [" | ".join(str(r.get(k, "")) for k in keys) for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/bench/runtime.json")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="5 repeats, tiny preset only for the engine")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = 5 if args.quick else args.repeats
    presets = ["tiny"] if args.quick else ["tiny", "siglip-base-qwen2-0.5b"]
    result = {
        "device": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU only, "
                  f"{args.threads} torch threads",
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "load_avg_at_start": os.getloadavg(),
        "memory": bench_memory(), "quant_error": bench_quant_error(),
        "attention": bench_attention(repeats), "cached_decode": bench_cached_decode(repeats),
        "constrained": bench_constrained(repeats), "engine": bench_engine(presets, 8, max(2, repeats // 5)),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    mem = [{"preset": p, **{k: f'{v["bytes_per_token"]:.0f} B ({v["vs_bf16"]:.3f}x)' for k, v in m.items()}}
           for p, m in result["memory"].items()]
    print(_table("KV bytes per token (ratio to bf16)", mem))
    print(_table("relative error", [{"scheme": k, **v} for k, v in result["quant_error"].items()]))
    for key in ("attention", "cached_decode", "constrained", "engine"):
        print(_table(key, result[key]))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
