"""The floor under an agent step on this device: the runtime's own work over the device's ceilings.

An agent step runs three kinds of forward: the vision tower over the screenshot, the decoder's
prefill of the prompt, and one decoder forward per decode step (a token, or a run of
grammar-forced ones). Each forward must do its multiply-adds and read its weights at least
once, so it takes at least max(FLOPs / peak matmul rate, weight bytes / peak read bandwidth).
The floor of a step is the sum over its forwards.

- FLOPs are counted by running the runtime itself under `torch.utils.flop_counter.FlopCounterMode`
  (matmuls, convolutions and attention): the work of *this* runtime's algorithm, with its
  jump-forward decoding, not an estimate.
- Both ceilings are measured here: the best matmul rate over the dtypes the device offers (bf16
  where the hardware multiplies it), and the read bandwidth for a working set the size of the
  weights (on a CPU, a set that fits the caches is read from them). Weights are counted at
  2 bytes per parameter.

So the floor holds for any fp32/bf16 implementation that does the same work, on this device:
the runtime's fraction of it says how far this device could still be pushed, and HF's time over
the floor caps the speedup any such implementation could show against HF. Not covered: int8
arithmetic (VNNI or AMX-INT8 peaks are about twice bf16's) and skipping work (say, reusing a
prompt prefix across steps). KV-cache reads, norms and softmax are left out, which only lowers
the floor.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

# counted by FlopCounterMode on CUDA out of the box, not the CPU flash kernel: same formula
_CPU_SDPA = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    from torch.utils.flop_counter import sdpa_flop_count

    def _cpu_sdpa_flops(q, k, v, *args, **kwargs) -> int:  # shapes of query, key, value
        return sdpa_flop_count(q, k, v)

    _CPU_SDPA = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}

WEIGHT_BYTES_PER_PARAM = 2  # bf16/fp16: the smallest float weights the floor allows


def _best_ms(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 2) -> float:
    """The fastest of `repeats` timed calls (a ceiling wants the best case, not the typical one)."""
    from autoui.runtime.bench import _timed

    for _ in range(warmup):
        fn()
    return min(_timed(fn, device) for _ in range(repeats))


def matmul_gflops(device: torch.device, dtype: torch.dtype, size: int | None = None, repeats: int = 5) -> float:
    """Square matmul rate in GFLOP/s (2 n^3 per product) for `dtype` on `device`."""
    n = size or (8192 if device.type == "cuda" else 1024)
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    return 2 * n ** 3 / _best_ms(lambda: a @ b, device, repeats) / 1e6


def read_gbps(device: torch.device, nbytes: int, repeats: int = 10) -> float:
    """Read bandwidth (GB/s) over a hot buffer of `nbytes` (a sum reads each byte once)."""
    buf = torch.ones(max(nbytes // 4, 1 << 16), device=device)  # fp32
    return buf.numel() * 4 / _best_ms(lambda: buf.sum(), device, repeats) / 1e6


def copy_gbps(device: torch.device, nbytes: int, repeats: int = 10) -> float:
    """Copy bandwidth (GB/s, bytes read + written) over buffers of `nbytes`."""
    a = torch.randn(max(nbytes // 4, 1 << 16), device=device)
    b = torch.empty_like(a)
    return 2 * a.numel() * 4 / _best_ms(lambda: b.copy_(a), device, repeats) / 1e6


def float_dtypes(device: torch.device) -> list[torch.dtype]:
    if device.type == "cuda":
        return [torch.float32, torch.bfloat16, torch.float16]
    return [torch.float32, torch.bfloat16]


def measure_ceilings(device: torch.device, working_set_bytes: int, matmul_size: int | None = None) -> dict[str, Any]:
    """Peak matmul rate per float dtype (and the best), read bandwidth over `working_set_bytes`."""
    rates = {str(dt).removeprefix("torch."): round(matmul_gflops(device, dt, matmul_size), 1)
             for dt in float_dtypes(device)}
    best = max(rates, key=rates.get)
    nbytes = working_set_bytes if device.type == "cpu" else max(working_set_bytes, 1 << 30)
    return {"matmul_gflops": rates, "peak_gflops": rates[best], "peak_dtype": best,
            "read_GBps": round(read_gbps(device, nbytes), 1), "read_set_MB": round(nbytes / 1e6, 2),
            "threads": torch.get_num_threads()}


def _flop_counter():
    """A silent `FlopCounterMode` that also knows the CPU flash-attention op."""
    from torch.utils.flop_counter import FlopCounterMode

    return FlopCounterMode(display=False, custom_mapping=_CPU_SDPA)


def counted_flops(fn: Callable[[], Any]) -> tuple[Any, int]:
    """(fn(), the FLOPs of its matmuls, convolutions and attention)."""
    with _flop_counter() as counter:
        out = fn()
    return out, counter.get_total_flops()


def weight_bytes(model: Any, bytes_per_param: int | None = WEIGHT_BYTES_PER_PARAM) -> dict[str, int]:
    """Bytes each kind of forward must read: "vision" (tower + projector) and "decoder" (every
    layer and the output projection; of the embedding table only one row per token, so not it,
    unless the output projection is the tied table). `bytes_per_param=None`: as stored."""
    def size(params) -> int:
        return sum(p.numel() * (bytes_per_param or p.element_size()) for p in params)

    dec = model.decoder
    head = model.lm_head.weight if model.lm_head is not None else dec.embed_tokens.weight
    layers = [p for n, p in dec.named_parameters() if not n.startswith("embed_tokens")]
    return {"vision": size(list(model.vision.parameters()) + list(model.projector.parameters())),
            "decoder": size(layers) + size([head])}


def step_work(model: Any, generate: Callable, engine: Callable[[], Any],
              prompts: Sequence[tuple[list[int], torch.Tensor]], max_new: int) -> dict[str, Any]:
    """The work of one batched call `generate(prompts, max_new)` of the runtime, by phase.

    `engine()` returns the `Engine` behind `generate` (built by a first, uncounted call). Its
    prefill and decode calls are counted apart; the vision tower, which runs inside the
    prefill, is counted on its own and taken out of it.
    """
    generate(list(prompts), max_new)  # builds the engine; the counted call below is the second
    eng = engine()
    pixels = torch.stack([px for _, px in prompts]).to(model.device, model.dtype)  # [B, 3, S, S]
    with torch.no_grad():
        _, vision = counted_flops(lambda: model.encode_images(pixels))
    phases = {"_prefill": 0, "_decode": 0}
    before = dict(eng.counts)
    with _flop_counter() as counter:
        def counting(name: str) -> Callable:
            method = getattr(eng, name)

            def run(*args, **kwargs):
                start = counter.get_total_flops()
                out = method(*args, **kwargs)
                phases[name] += counter.get_total_flops() - start
                return out
            return run

        for name in phases:
            setattr(eng, name, counting(name))  # instance attributes shadow the methods...
        try:
            outs = generate(list(prompts), max_new)
        finally:
            for name in phases:
                delattr(eng, name)  # ...until removed here
    return {"batch": len(prompts), "vision_flops": vision, "prefill_flops": phases["_prefill"] - vision,
            "decode_flops": phases["_decode"], "prefills": eng.counts["prefills"] - before["prefills"],
            "decode_forwards": eng.counts["decode_forwards"] - before["decode_forwards"],
            "new_tokens": sum(len(o) for o in outs), "prompt_tokens": sum(len(ids) for ids, _ in prompts),
            "padded_prompt_tokens": len(prompts) * max(len(ids) for ids, _ in prompts)}


def floor_ms(work: dict[str, Any], weights: dict[str, int], ceilings: dict[str, Any]) -> dict[str, float]:
    """Per phase and in total, the least time the batch's work can take on this device (ms).

    The runtime right-pads a batched prefill; the floor counts prefill FLOPs for the real
    prompt tokens only (scaled by real / padded tokens), as a packed prefill would do them.
    """
    real = work["prompt_tokens"] / work["padded_prompt_tokens"]
    flops_per_ms, bytes_per_ms = ceilings["peak_gflops"] * 1e6, ceilings["read_GBps"] * 1e6

    def phase(flops: float, forwards: int, nbytes: int) -> float:
        return max(flops / flops_per_ms, forwards * nbytes / bytes_per_ms) if forwards else flops / flops_per_ms

    out = {"vision": phase(work["vision_flops"], 1, weights["vision"]),
           "prefill": phase(work["prefill_flops"] * real, work["prefills"], weights["decoder"]),
           "decode": phase(work["decode_flops"], work["decode_forwards"], weights["decoder"])}
    out["total"] = sum(out.values())
    return {k: round(v, 4) for k, v in out.items()}
