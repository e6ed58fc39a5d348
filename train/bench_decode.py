"""Decode speed of a larger preset against the memory-bandwidth roofline (GPU benchmark).

A decode step must read every decoder weight once and each sequence's cached keys and
values once; on a GPU that byte count over the measured copy bandwidth is the step's floor.
This script builds a preset with random weights (speed does not depend on training), fills
the runtime's KV cache with `--context` tokens per sequence and times decode steps of the
engine (`Engine.step`, host logic included) for each batch size, context and `--configs`
triple (cache kind : decode mode, CUDA graphs or eager : attention backend), then reports:

- ms per decode step and the fraction of the roofline it reaches;
- each quantized cache's decode speed as a fraction of the plain (bf16) cache's;
- the attention kernel alone: the fused Triton decode kernel on plain bf16, int8 and int4
  caches vs SDPA over contiguous bf16 K/V of the same length (the "fused quantized decode
  >= 90% of bf16" check);
- HF transformers' LlamaForCausalLM (same decoder shape, bf16, SDPA, DynamicCache) per
  decoded token, the peer;
- the two ceilings measured here: device-to-device copy bandwidth and a bf16 matmul.

    python train/bench_decode.py --device cuda --preset clip-l336-tinyllama-1.1b \\
        --json train/results/bench_decode_h200.json
    python train/bench_decode.py --device cpu --preset tiny --batches 1,2 --contexts 40 --steps 4  # smoke run

`train/gpu_check.sh` runs it (with the CUDA tests and `autoui bench runtime`) on a lent GPU.
Off CUDA, "graphs" configs run the same static steps without capturing ("static").

Writes a JSON file and prints a table. Each section is timed separately and a failing one is
recorded with its error, so one broken path does not lose the others' numbers.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

try:
    import autoui  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoui.model import AutoUIModel, load_preset
from autoui.runtime import roofline
from autoui.runtime.bench import _timed
from autoui.runtime.engine import Engine, EngineConfig, Request


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def wall_ms(fn, device: torch.device, repeats: int = 5, warmup: int = 2) -> float:
    """Median wall time of `fn()` in ms (device synchronized around each call)."""
    for _ in range(warmup):
        fn()
    return statistics.median(_timed(fn, device) for _ in range(repeats))


def ceilings(device: torch.device) -> dict:
    """Copy bandwidth (bytes read + written per second) and bf16 matmul rate, measured here."""
    n = (1 << 30) if device.type == "cuda" else (1 << 26)
    return {"copy_GBps": round(roofline.copy_gbps(device, n), 1),
            "bf16_matmul_TFLOPs": round(roofline.matmul_gflops(device, torch.bfloat16, 8192 if device.type == "cuda"
                                                               else 512) / 1e3, 1)}


def build_model(preset: str, device: torch.device, dtype: torch.dtype) -> AutoUIModel:
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoUIModel(load_preset(preset))
    return model.to(dtype).eval()


def engine_decode(model, kind: str, mode: str, attention: str, batch: int, context: int, steps: int) -> dict:
    """ms per decode step of `batch` sequences holding ~`context` tokens (graphs captured in a first pass)."""
    vocab = model.config.decoder.vocab_size
    g = torch.Generator().manual_seed(batch * 7919 + context)
    prompts = [torch.randint(5, vocab, (context,), generator=g).tolist() for _ in range(batch)]
    engine = Engine(model, EngineConfig(max_batch=batch, max_seq_len=context + steps + 2, cache_kind=kind,
                                        max_new_tokens=steps + 1, prefill_dtype="same", decode=mode,
                                        attention=attention))
    engine.eos_id = -1  # random weights: never stop early, every request decodes `steps` tokens

    def run() -> tuple[float, float]:
        engine.reset()
        for ids in prompts:
            engine.submit(Request(ids))
        sync(model.device)
        t0 = time.perf_counter()
        engine.step()  # prefill of every request
        sync(model.device)
        t1 = time.perf_counter()
        n = 0
        while engine.active:
            engine.step()
            n += 1
        sync(model.device)
        return (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3 / max(1, n)

    run()  # warm-up: captures every (batch, key-bucket) graph this run needs
    prefill, step = zip(*(run() for _ in range(3)))
    out = {"ms_per_step": round(statistics.median(step), 4), "prefill_ms": round(statistics.median(prefill), 2),
           "kv_bytes_per_token": engine.cache.bytes_per_token(), "attention": engine.cache.backend.describe()}
    if engine.graphs is not None:
        out.update(graph_shapes=len(engine.graphs.steps), graphs_broken=engine.graphs.broken)
    return out


def kernel_attention(device: torch.device, batch: int, context: int, hq: int, hkv: int, d: int) -> dict:
    """Decode attention alone (one layer): SDPA over a contiguous bf16 K/V vs the Triton kernel on the
    plain (bf16), int8 and int4 caches (bytes: what each must read)."""
    from autoui.runtime.attention.sdpa import sdpa_attention
    from autoui.runtime.attention.triton_decode import cache_parts, triton_available, triton_decode_attention
    from autoui.runtime.cache import CacheConfig, make_cache

    out = {}
    q = torch.randn(batch, hq, 1, d, device=device, dtype=torch.bfloat16)
    k, v = (torch.randn(batch, context, hkv, d, device=device, dtype=torch.bfloat16) for _ in range(2))
    ms = wall_ms(lambda: sdpa_attention(q, k, v, "none", None), device, repeats=20, warmup=3)
    out["sdpa_bf16"] = {"us": round(ms * 1e3, 1), "GBps": round(2 * k.numel() * 2 / ms / 1e6, 1)}
    if not triton_available(device):
        out["triton"] = "unavailable on this device"
        return out
    for kind in ("plain", "int8", "int4"):
        cache = make_cache(CacheConfig(kind=kind, n_layers=1, n_kv_heads=hkv, head_dim=d, max_batch=batch,
                                       max_seq_len=context, device=device, dtype=torch.bfloat16, attention="triton"))
        slots = cache.allocate(batch)
        cache._write(0, torch.tensor(slots, device=device).repeat_interleave(context),
                     torch.arange(context, device=device).repeat(batch),
                     k.reshape(-1, hkv, d), v.reshape(-1, hkv, d))
        int4, parts = kind == "int4", cache_parts(cache, 0)
        slot_t = torch.tensor(slots, device=device)
        lens = torch.full((batch,), context, device=device)

        def fused():
            return triton_decode_attention(q[:, :, 0], parts, slot_t, lens, cache.config.group_size, int4, context,
                                           value_group_size=cache.config.value_group_size)

        ref = sdpa_attention(q, k, v, "none", None)[:, :, 0].float()
        err = ((fused().float() - ref).norm() / ref.norm()).item()
        ms = wall_ms(fused, device, repeats=20, warmup=3)
        kv_bytes = cache.bytes_per_token() * batch * context
        out[f"triton_{kind}"] = {"us": round(ms * 1e3, 1), "GBps": round(kv_bytes / ms / 1e6, 1),
                                 "rel_err_vs_bf16": round(err, 4),
                                 "speed_vs_sdpa_bf16": round(out["sdpa_bf16"]["us"] / (ms * 1e3), 3)}
    return out


def hf_per_token(model: AutoUIModel, batch: int, context: int, steps: int) -> dict:
    """HF LlamaForCausalLM with the same decoder shape (random weights, the model's dtype, SDPA):
    ms per decoded token = (generate(steps) - generate(1)) / (steps - 1)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    d = model.config.decoder
    cfg = LlamaConfig(vocab_size=d.vocab_size, hidden_size=d.hidden_size, intermediate_size=d.intermediate_size,
                      num_hidden_layers=d.num_layers, num_attention_heads=d.num_heads,
                      num_key_value_heads=d.num_kv_heads, head_dim=d.resolved_head_dim, rms_norm_eps=d.rms_norm_eps,
                      rope_theta=d.rope_theta, max_position_embeddings=max(d.max_position_embeddings, context + steps),
                      tie_word_embeddings=d.tie_word_embeddings, attention_bias=d.qkv_bias)
    with torch.device(model.device):
        hf = LlamaForCausalLM(cfg).to(model.dtype).eval()
    ids = torch.randint(5, d.vocab_size, (batch, context), device=model.device)

    def gen(n: int):
        with torch.no_grad():
            return hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                               min_new_tokens=n, do_sample=False, pad_token_id=0)

    one = wall_ms(lambda: gen(1), model.device, repeats=3, warmup=1)
    full = wall_ms(lambda: gen(steps), model.device, repeats=3, warmup=1)
    del hf
    return {"ms_per_token": round((full - one) / (steps - 1), 4), "prefill_ms": round(one, 2)}


DEFAULT_CONFIGS = ("plain:graphs:auto,plain:graphs:sdpa,plain:eager:auto,plain:eager:triton,"
                   "int8:graphs:auto,int8:eager:auto,int4:graphs:auto,int4:eager:auto,fp8:graphs:auto")


def vs_plain(decode: dict) -> dict:
    """Decode speed of each quantized cache as a fraction of the plain cache's, same mode/attention/batch/context."""
    out = {}
    for key, r in decode.items():
        kind, rest = key.split("/", 1)
        plain = decode.get(f"plain/{rest}", {})
        if kind != "plain" and "ms_per_step" in r and "ms_per_step" in plain:
            out[key] = round(plain["ms_per_step"] / r["ms_per_step"], 3)
    return out


def section(results: dict, name: str, fn) -> None:
    """Run one part of the benchmark; record its error instead of losing the rest."""
    t = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as exc:  # noqa: BLE001 - keep measuring the other sections
        results[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}
    print(f"[{name}] {time.perf_counter() - t:.1f} s", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="clip-l336-tinyllama-1.1b")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--contexts", default="512,2048")
    p.add_argument("--configs", default=DEFAULT_CONFIGS,
                   help="comma-separated cache:decode:attention triples (decode graphs|static|eager; "
                        "attention auto|sdpa|triton|reference)")
    p.add_argument("--steps", type=int, default=48, help="decode steps timed per run")
    p.add_argument("--no-hf", action="store_true")
    p.add_argument("--json", type=Path, default=Path("runs/bench/decode.json"))
    args = p.parse_args(argv)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    batches = [int(b) for b in args.batches.split(",")]
    contexts = [int(c) for c in args.contexts.split(",")]
    configs = [c.split(":") for c in args.configs.split(",")]
    args.json.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every section: a run stopped at its time limit keeps what it measured
        args.json.write_text(json.dumps(res, indent=1))

    if device.type != "cuda":  # no graphs, no kernel off CUDA (unless Triton's interpreter is on)
        configs = [(k, "static" if m == "graphs" else m, a) for k, m, a in configs]

    res: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
                 "date": datetime.date.today().isoformat(), "torch": torch.__version__, "preset": args.preset,
                 "dtype": args.dtype, "steps": args.steps}
    section(res, "ceilings", lambda: ceilings(device))
    model = build_model(args.preset, device, dtype)
    d = model.config.decoder
    wbytes = roofline.weight_bytes(model, bytes_per_param=None)["decoder"]  # as stored
    res["decoder_weight_bytes"] = wbytes
    bw = res["ceilings"].get("copy_GBps") if isinstance(res["ceilings"], dict) else None
    res["decode"] = {}
    for kind, mode, attention in configs:
        for batch in batches:
            for ctx in contexts:
                key = f"{kind}/{mode}/{attention}/b{batch}/ctx{ctx}"
                section(res["decode"], key,
                        lambda: engine_decode(model, kind, mode, attention, batch, ctx, args.steps))
                r = res["decode"][key]
                if "ms_per_step" in r and bw:
                    mean_len = ctx + args.steps / 2
                    floor_bytes = wbytes + batch * mean_len * r["kv_bytes_per_token"]
                    r["roofline_ms"] = round(floor_bytes / (bw * 1e6), 4)
                    r["roofline_fraction"] = round(r["roofline_ms"] / r["ms_per_step"], 3)
                save()
    res["quantized_vs_plain_speed"] = vs_plain(res["decode"])
    res["attention_kernel"] = {}
    for ctx in contexts:
        b = max(batches)
        section(res["attention_kernel"], f"b{b}/ctx{ctx}",
                lambda: kernel_attention(device, b, ctx, d.num_heads, d.num_kv_heads, d.resolved_head_dim))
        save()
    if not args.no_hf:
        res["hf"] = {}
        for batch in batches:
            section(res["hf"], f"b{batch}/ctx{contexts[0]}", lambda: hf_per_token(model, batch, contexts[0], args.steps))
    save()
    print(table(res))
    print(f"wrote {args.json}")
    return 0


def table(res: dict) -> str:
    lines = [f"bench_decode  {res['device']}  {res['date']}  preset {res['preset']} ({res['dtype']})  "
             f"ceilings {res['ceilings']}  decoder weights {res['decoder_weight_bytes'] / 1e6:.0f} MB",
             f"{'cache/decode/attention/batch/context':<36}{'ms/step':>10}{'roofline':>10}{'fraction':>10}{'prefill ms':>12}"]
    for key, r in res["decode"].items():
        if "ms_per_step" not in r:
            lines.append(f"{key:<36}  {r.get('error', '')[:90]}")
            continue
        lines.append(f"{key:<36}{r['ms_per_step']:>10.3f}{r.get('roofline_ms', math.nan):>10.3f}"
                     f"{r.get('roofline_fraction', math.nan):>10.3f}{r['prefill_ms']:>12.1f}")
    lines.append("quantized decode speed / plain: " + ", ".join(f"{k} {v}" for k, v in res["quantized_vs_plain_speed"].items()))
    for key, r in res["attention_kernel"].items():
        lines.append(f"attention kernel {key}: {json.dumps(r)[:300]}")
    for key, r in res.get("hf", {}).items():
        lines.append(f"HF LlamaForCausalLM {key}: {json.dumps(r)[:200]}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
