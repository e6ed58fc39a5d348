"""`run_bench`: every measurement of `autoui bench runtime` in one run, and its printed table.

The measuring pieces (inputs, timers, memory probe, methods) are in `autoui.runtime.bench`.
"""
from __future__ import annotations

import logging
import os
import platform
import shutil
from typing import Any, Sequence

import torch

from autoui.runtime.bench import (
    RUNTIME_KINDS,
    BenchConfig,
    StepInputs,
    build_methods,
    export_for_hf,
    load_heldout,
    measure_breakdown,
    measure_latency,
    measure_throughput,
    peak_memory_mb,
    probe,
    today,
)

log = logging.getLogger("autoui.runtime.bench")


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else the architecture."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def device_name(device: torch.device) -> str:
    """Words for the machine: "2-core CPU (<model>, <arch>, AMX|AVX512-BF16|no bf16 matmul), no GPU",
    or the CUDA device's name.

    CPU numbers differ a lot between machines of the same size (AMX makes bf16 prefill ~5x
    faster per matmul, AVX512-BF16 ~2.3x), so the model and its bf16 support are part of
    every CPU result.
    """
    from autoui.runtime.engine import cpu_bf16_matmul

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    gpu = "GPU present but unused" if torch.cuda.is_available() else "no GPU"
    bf16 = cpu_bf16_matmul() or "no bf16 matmul"
    return f"{len(os.sched_getaffinity(0))}-core CPU ({cpu_model()}, {platform.machine()}, {bf16}), {gpu}"


def kv_bytes_per_token(model: Any, hf_model: Any = None) -> dict[str, Any]:
    """Bytes per token (all layers, K+V, scales) of each runtime cache, bf16, and HF's DynamicCache."""
    from autoui.runtime.cache import make_cache
    from autoui.runtime.engine import cache_config

    def size(kind: str, dtype: torch.dtype) -> float:
        return make_cache(cache_config(model.config.decoder, kind, dtype)).bytes_per_token()

    out: dict[str, Any] = {k: size(k, model.dtype) for k in RUNTIME_KINDS}
    out["bf16"] = size("plain", torch.bfloat16)
    out["plain_dtype"] = str(model.dtype).removeprefix("torch.")
    out["vs_bf16"] = {k: round(out[k] / out["bf16"], 4) for k in RUNTIME_KINDS}
    if hf_model is not None:
        from autoui.runtime.hf_baseline import dynamic_cache_bytes_per_token

        out["hf-dynamic"] = dynamic_cache_bytes_per_token(hf_model)
    return out


def score(tokenizer: Any, outputs: Sequence[Sequence[int]], samples: Sequence[Any]) -> dict[str, float]:
    """AITW action match and parse rate (both %) of generated ids against the samples' targets."""
    from autoui.actions import ActionParseError, parse_action
    from autoui.metrics.matching import match_actions
    from autoui.model.prompt import decode_text

    preds = []
    for ids in outputs:
        try:
            preds.append(parse_action(decode_text(tokenizer, ids)).action)
        except ActionParseError:
            preds.append(None)
    hits = match_actions(preds, [s.target for s in samples], [s.ui_positions for s in samples])
    n = len(samples)
    return {"action_match": round(100.0 * float(hits.sum()) / n, 2),
            "parse_rate": round(100.0 * sum(p is not None for p in preds) / n, 2), "n": n}


def _memory(methods: dict, prompts: list, max_new: int, device: torch.device) -> dict[str, float]:
    """Peak extra memory of one batch at the largest size; runtime engines (and caches) are built inside."""
    out = {}
    for name, gen in methods.items():
        holder = getattr(gen, "engine_holder", None)
        if holder is not None:
            holder.clear()  # the preallocated cache counts: build it inside the window
        out[name] = round(peak_memory_mb(lambda: gen(prompts, max_new), device), 1)
    return out


def _eval_outputs(gen: Any, prompts: list, batch: int, max_new: int) -> list[list[int]]:
    outs: list[list[int]] = []
    for i in range(0, len(prompts), batch):
        outs.extend(gen(prompts[i:i + batch], max_new))
    return outs


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Measure everything (see the module docstring of `autoui.runtime.bench`); the JSON-ready result."""
    from autoui.agent import load_agent, trained_limits

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    model, tok = load_agent(cfg.model, device=cfg.device, dtype=cfg.dtype)
    limits = trained_limits(cfg.model)  # prompts as the model was trained: the same history length
    samples = load_heldout(cfg.data, max(cfg.eval_steps, cfg.latency_steps), history=limits.max_history)
    inputs = StepInputs(model, tok, cfg.fmt, limits)
    prompts = [inputs(s) for s in samples]
    max_seq = max(len(ids) for ids, _ in prompts) + cfg.max_new_tokens
    export_dir = export_for_hf(cfg.model) if cfg.hf else None
    try:
        methods, skipped = build_methods(cfg, model, tok, max_seq, export_dir)
        probe(methods, skipped, prompts[0], cfg.max_new_tokens)
        res = _measure(cfg, model, tok, samples, prompts, inputs, methods, skipped, device)
    finally:
        if export_dir is not None:
            shutil.rmtree(export_dir, ignore_errors=True)
    res["unavailable"] = skipped
    res.update(device=device_name(device), date=today(), runtime_dtype=str(model.dtype).removeprefix("torch."),
               threads=torch.get_num_threads(), model=str(cfg.model),
               data=str(cfg.data), fmt=cfg.fmt, max_new_tokens=cfg.max_new_tokens, batches=list(cfg.batches),
               torch=torch.__version__, notes=list(cfg.notes) + NOTES)
    return res


NOTES = [
    "An agent step = preprocess the raw screenshot + prompt ids + prefill + greedy decode of one action.",
    "HF generate() is unconstrained; `runtime` is the serving default: constrained (valid actions by "
    "construction), on CPUs through the fused C++ kernel, and on AMX / AVX512-BF16 CPUs with bf16 products "
    "in prefills (attention included on AMX); on AMX every decode step is bf16 on the tiles too (each row's "
    "arithmetic independent of the batch), elsewhere decode is fp32. `runtime-eager` is the same engine with "
    "PyTorch ops (decode='eager'). "
    "`runtime-unconstrained` is HF's apples-to-apples peer (no constraint, the model's dtype throughout). "
    "All stop at EOS or max_new_tokens.",
    "HF batches are left-padded with an attention mask; the runtime right-pads its prefill internally.",
    "action_match: AITW matching on held-out steps (eval set); action_match_delta: points vs the plain cache.",
    "peak_memory_mb: RSS delta on CPU (sampled every 1 ms, after malloc_trim), includes the runtime's "
    "preallocated KV cache for max(batches) slots; weights are loaded before and not counted.",
    "roofline: the runtime's FLOPs per phase (vision, prefill, decode; counted by PyTorch on the eager engine, "
    "which does the fused kernel's math through ATen) over this device's best matmul "
    "rate, or its weights (2 bytes/param) over the read bandwidth, whichever is longer, summed over forwards; "
    "preprocessing is not in the floor, steps/s include it. max_speedup_vs_hf = HF ms per step / floor.",
]


def _measure(cfg: BenchConfig, model: Any, tok: Any, samples: list, prompts: list, inputs: StepInputs,
             methods: dict, skipped: dict, device: torch.device) -> dict[str, Any]:
    from tqdm import tqdm

    from autoui.runtime.hf_baseline import HFUnavailable

    lat_samples = samples[: cfg.latency_steps]
    latency, outs_b1, steps = {}, {}, {}
    for name, gen in tqdm(list(methods.items()), desc="batch-1 latency", leave=False):
        try:
            latency[name], outs_b1[name] = measure_latency(gen, lat_samples, inputs, cfg.max_new_tokens, device)
        except HFUnavailable as exc:  # e.g. a quantized HF cache failing on some prompt length
            skipped[name] = str(exc)[:500]
            del methods[name]
    for name, gen in tqdm(methods.items(), desc="throughput", leave=False):
        steps[name] = {str(b): measure_throughput(gen, samples, inputs, b, cfg.max_new_tokens, cfg.repeats, device)
                       for b in cfg.batches}
    breakdown = measure_breakdown(model, methods, lat_samples[:8], inputs, cfg.max_new_tokens, device)
    # the work is counted on the eager twin where there is one: the fused kernel's own matmul and
    # attention loops are invisible to PyTorch's FLOP counter, and both engines do the same math
    floor = roofline_section(model, methods.get("runtime-eager", methods.get("runtime")), prompts, steps, cfg, device)
    big = max(cfg.batches)
    memory = _memory(methods, [prompts[i % len(prompts)] for i in range(big)], cfg.max_new_tokens, device)
    eval_prompts, eval_samples = prompts[: cfg.eval_steps], samples[: cfg.eval_steps]
    quality = {name: score(tok, _eval_outputs(gen, eval_prompts, big, cfg.max_new_tokens), eval_samples)
               for name, gen in methods.items() if name.startswith("runtime")}
    subset = {name: score(tok, outs, lat_samples) for name, outs in outs_b1.items()}
    hf_model = getattr(getattr(methods.get("hf-dynamic"), "__self__", None), "model", None)
    res: dict[str, Any] = {
        "latency_ms_b1": latency, "steps_per_s": steps, "peak_memory_mb": memory, "breakdown_ms_b1": breakdown,
        "kv_bytes_per_token": kv_bytes_per_token(model, hf_model),
        "action_match": {k: v["action_match"] for k, v in quality.items()},
        "parse_rate": {k: v["parse_rate"] for k, v in quality.items()}, "eval_steps": len(eval_samples),
        "latency_subset_scores": subset, "latency_steps": len(lat_samples), "roofline": floor,
    }
    plain = quality.get("runtime", {}).get("action_match")
    res["action_match_delta"] = {k: round(quality[f"runtime-{k}"]["action_match"] - plain, 2)
                                 for k in RUNTIME_KINDS[1:] if f"runtime-{k}" in quality and plain is not None}
    # the serving prefill, the CUDA-graph decode and the eager engine vs the plain default
    for name in [n for n in quality if n.endswith(("-prefill", "-graphs", "-eager")) and plain is not None]:
        res["action_match_delta"][name.removeprefix("runtime-")] = round(quality[name]["action_match"] - plain, 2)
    res.update(_speedups(latency, steps, cfg.batches))
    if "hf-dynamic" in outs_b1:
        pairs = list(zip(outs_b1["runtime-unconstrained"], outs_b1["hf-dynamic"]))
        same = sum(a == b for a, b in pairs)
        res["agreement_runtime_vs_hf"] = {"steps": len(pairs), "same_tokens": same,
                                          "fraction": round(same / max(1, len(pairs)), 4)}
    return res


def roofline_section(model: Any, gen: Any, prompts: list, steps: dict, cfg: BenchConfig,
                     device: torch.device) -> dict[str, Any]:
    """Per batch size: the floor of the runtime's work on this device (`autoui.runtime.roofline`),
    the runtime's and HF's measured ms per step, the runtime's fraction of the floor, and HF's
    time over the floor: the most any fp32/bf16 implementation of this work could beat HF by here."""
    if gen is None:
        return {"unavailable": "the runtime method did not run"}
    from autoui.runtime import roofline

    weights = roofline.weight_bytes(model)
    out: dict[str, Any] = {"ceilings": roofline.measure_ceilings(device, weights["decoder"]),
                           "weight_bytes": weights, "batches": {}}
    for b in cfg.batches:
        batch = [prompts[i % len(prompts)] for i in range(b)]
        work = roofline.step_work(model, gen, lambda: gen.engine_holder["engine"], batch, cfg.max_new_tokens)
        floor = roofline.floor_ms(work, weights, out["ceilings"])
        row: dict[str, Any] = {"work": work, "floor_ms": floor, "floor_ms_per_step": round(floor["total"] / b, 4)}
        for name in ("runtime", "hf-dynamic"):
            if name in steps:
                row[f"{name}_ms_per_step"] = round(1e3 / steps[name][str(b)], 3)
        row["runtime_fraction_of_floor"] = round(row["floor_ms_per_step"] / row["runtime_ms_per_step"], 3)
        if "hf-dynamic_ms_per_step" in row:
            row["max_speedup_vs_hf"] = round(row["hf-dynamic_ms_per_step"] / row["floor_ms_per_step"], 2)
        out["batches"][str(b)] = row
    return out


def _speedups(latency: dict, steps: dict, batches: Sequence[int]) -> dict[str, Any]:
    if "hf-dynamic" not in latency:
        return {"speedup_vs_hf_b1": None, "speedup_vs_hf_b32": None, "speedup_vs_hf": {}}
    out: dict[str, Any] = {}
    for peer in [p for p in latency if p.startswith("hf-dynamic")]:
        suffix = peer.removeprefix("hf-dynamic")  # "" (fp32, the headline) or "-bfloat16"
        peer_steps = steps[peer]
        per = {name: {b: round(s[b] / peer_steps[b], 3) for b in s}
               for name, s in steps.items() if name.startswith("runtime")}
        out.update({
            f"speedup_vs_hf{suffix}_b1": round(latency[peer]["p50"] / latency["runtime"]["p50"], 3),
            f"speedup_vs_hf{suffix}_b32": per["runtime"].get("32"),
            f"speedup_vs_hf{suffix}_b1_unconstrained": round(latency[peer]["p50"]
                                                             / latency["runtime-unconstrained"]["p50"], 3),
            f"speedup_vs_hf{suffix}": per})
    return out


def format_table(res: dict[str, Any]) -> str:
    """The result as a fixed-width text table (one row per method) plus the headline ratios."""
    batches = [str(b) for b in res["batches"]]
    head = f"{'method':<24}{'p50 ms':>9}{'p95 ms':>9}" + "".join(f"{'b' + b + ' st/s':>11}" for b in batches)
    head += f"{'peak MB':>9}{'match %':>9}"
    lines = [f"autoui bench runtime  {res['device']}  {res['date']}  threads={res['threads']}", head]
    for name, lat in res["latency_ms_b1"].items():
        row = f"{name:<24}{lat['p50']:>9.1f}{lat['p95']:>9.1f}"
        row += "".join(f"{res['steps_per_s'][name][b]:>11.1f}" for b in batches)
        match = res["action_match"].get(name, res["latency_subset_scores"][name]["action_match"])
        row += f"{res['peak_memory_mb'][name]:>9.1f}{match:>9.1f}"
        lines.append(row)
    lines.append(f"match %: AITW action match on {res['eval_steps']} held-out steps (hf-*: on the "
                 f"{res['latency_steps']} batch-1 steps only)")
    kv = res["kv_bytes_per_token"]
    lines.append("KV bytes/token: " + ", ".join(f"{k} {kv[k]:.0f} ({kv['vs_bf16'][k]}x bf16)" for k in RUNTIME_KINDS))
    lines.append(f"speedup vs HF (fp32): b1 {res['speedup_vs_hf_b1']}x, b32 {res['speedup_vs_hf_b32']}x; "
                 f"action-match delta vs plain (points): {res['action_match_delta']}")
    for key in [k for k in res if k.startswith("speedup_vs_hf-") and k.endswith("_b1")]:
        peer = key.removeprefix("speedup_vs_hf-").removesuffix("_b1")
        lines.append(f"speedup vs HF ({peer}): b1 {res[key]}x, b32 {res[f'speedup_vs_hf-{peer}_b32']}x")
    lines.append("batch-1 breakdown (ms, medians): " + ", ".join(f"{k} {v}" for k, v in res["breakdown_ms_b1"].items()))
    lines.extend(_roofline_lines(res.get("roofline", {})))
    if "agreement_runtime_vs_hf" in res:
        a = res["agreement_runtime_vs_hf"]
        lines.append(f"runtime (unconstrained) == HF tokens on {a['same_tokens']}/{a['steps']} batch-1 steps")
    for name, why in res.get("unavailable", {}).items():
        lines.append(f"unavailable: {name}: {why[:160]}")
    return "\n".join(lines)


def _roofline_lines(floor: dict[str, Any]) -> list[str]:
    if "batches" not in floor:
        return [f"roofline: {floor.get('unavailable', 'not measured')}"] if floor else []
    c = floor["ceilings"]
    lines = [f"roofline (model work only; this device, {c['threads']} thread(s): {c['peak_dtype']} matmul "
             f"{c['peak_gflops']} GFLOP/s, read {c['read_GBps']} GB/s):"]
    for b, row in floor["batches"].items():
        cap = f", HF {row['hf-dynamic_ms_per_step']} ms: at most {row['max_speedup_vs_hf']}x vs HF" \
            if "max_speedup_vs_hf" in row else ""
        lines.append(f"  b{b}: floor {row['floor_ms_per_step']} ms/step {row['floor_ms']}, runtime "
                     f"{row['runtime_ms_per_step']} ms = {100 * row['runtime_fraction_of_floor']:.0f}% of it{cap}")
    return lines
