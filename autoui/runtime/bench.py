"""`autoui bench runtime`: the serving runtime against HF transformers `generate()`, in one run.

Same weights (the model, and its `export_hf` Llava copy), same inputs (real held-out
demonstration steps: prompt ids + screenshots), same greedy decoding, same
`max_new_tokens`, same torch threads. An agent step is timed from the raw screenshot:
preprocess + prompt ids + prefill + decode of one action.

Methods: `runtime` (plain cache, constrained: the serving default), on CUDA also
`runtime-graphs` / `runtime-int8-graphs` / `runtime-int4-graphs` (decode steps replayed as CUDA
graphs, `EngineConfig.decode="graphs"`), `runtime-unconstrained`
(plain cache, free text: the apples-to-apples peer of HF), `runtime-int8|int4|fp8`
(constrained), `hf-dynamic` (DynamicCache), `hf-quanto-int4` and `hf-fp8` (HF's
QuantizedCache; skipped with the reason in the JSON when they cannot run).
"""
from __future__ import annotations

import ctypes
import datetime
import logging
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

log = logging.getLogger("autoui.runtime.bench")

RUNTIME_KINDS = ("plain", "int8", "int4", "fp8")


class BenchError(ValueError):
    """Benchmark settings or inputs that cannot be used (the message says which)."""


@dataclass
class BenchConfig:
    """What `run_bench` measures and on what."""

    model: Path
    data: Path
    batches: tuple[int, ...] = (1, 8, 32)
    device: str = "cpu"
    threads: int = 0  # 0: keep torch's current setting
    dtype: str = "auto"  # the runtime's serving dtype (autoui.agent.serving_dtype); HF runs fp32 plus this
    eval_steps: int = 64  # held-out steps for action match
    latency_steps: int = 24  # batch-1 steps timed per method
    repeats: int = 3  # timed repeats per batch size (median)
    max_new_tokens: int = 24
    fmt: str = "compact"
    hf: bool = True
    hf_quantized: bool = True
    seed: int = 0
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.model, self.data = Path(self.model), Path(self.data)
        if not self.batches or any(not isinstance(b, int) or b < 1 for b in self.batches):
            raise BenchError(f"batches must be positive ints, got {self.batches!r}")
        for name in ("eval_steps", "latency_steps", "repeats", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise BenchError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise BenchError(f"device must be cpu or cuda, got {self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise BenchError("--device cuda asked for, but torch sees no CUDA device")
        if not (self.model / "model.safetensors").is_file():
            raise BenchError(f"{self.model} is not a model directory (no model.safetensors)")
        if not self.data.exists():
            raise BenchError(f"held-out data {self.data} does not exist")


# -- inputs -------------------------------------------------------------------------------
def load_heldout(data: Path, n: int, history: int = 8) -> list[Any]:
    """Up to `n` `Sample`s, spread over the shards (round robin), so every task is represented."""
    from autoui.data.aitw import read_episodes
    from autoui.data.samples import make_samples
    from autoui.data.tfrecord import expand_paths

    files = list(expand_paths(data))
    if not files and data.is_dir():  # a root holding dataset folders (e.g. data/miniwob/heldout)
        files = list(expand_paths(sorted(d for d in data.iterdir() if d.is_dir())))
    if not files:
        raise BenchError(f"no TFRecord shards under {data}")
    per_file = [[s for ep in read_episodes(f) for s in make_samples(ep, history=history)][:n] for f in files]
    out: list[Any] = []
    for i in range(n):
        out.extend(rows[i] for rows in per_file if i < len(rows))
    if not out:
        raise BenchError(f"the shards under {data} hold no steps")
    return out[:n]


class StepInputs:
    """Screenshot + goal + history -> (prompt ids, pixels [3, S, S]): the preprocessing of one agent step."""

    def __init__(self, model: Any, tokenizer: Any, fmt: str, limits: Any = None):
        from autoui.model.preprocess import ScreenPreprocessor
        from autoui.model.prompt import PromptLimits

        self.model, self.tokenizer, self.fmt = model, tokenizer, fmt
        self.limits = limits or PromptLimits()
        self.screen = ScreenPreprocessor.from_config(model.config)

    def __call__(self, sample: Any) -> tuple[list[int], torch.Tensor]:
        from autoui.model.prompt import build_inputs

        pixels, _ = self.screen(sample.image)  # [3, S, S]
        return build_inputs(self.tokenizer, self.model.config, sample.goal, sample.history, self.fmt, self.limits), pixels


# -- measuring ----------------------------------------------------------------------------
def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _trim() -> None:
    """Hand freed heap back to the OS so the next RSS baseline is honest (glibc only)."""
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory_mb(fn: Callable[[], Any], device: torch.device) -> float:
    """Peak extra memory while `fn()` runs: RSS delta on CPU (sampled every 1 ms), allocator peak on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    _trim()
    base = peak = _rss()
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss())
            time.sleep(0.001)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        fn()
    finally:
        stop.set()
        t.join()
    return (max(peak, _rss()) - base) / 2**20


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t) * 1e3


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


# -- methods ------------------------------------------------------------------------------
Generate = Callable[[list[tuple[list[int], torch.Tensor]], int], list[list[int]]]


def runtime_method(model: Any, kind: str, constraint: Any, max_batch: int, max_seq_len: int,
                   prefill_dtype: str = "auto", decode: str = "auto") -> Generate:
    """A generate function over a fresh `Engine` with a `kind` cache (built on first use)."""
    from autoui.runtime.engine import Engine, EngineConfig, Request

    holder: dict[str, Any] = {}

    def generate(prompts: list[tuple[list[int], torch.Tensor]], max_new: int) -> list[list[int]]:
        if "engine" not in holder:
            holder["engine"] = Engine(model, EngineConfig(max_batch=max_batch, max_seq_len=max_seq_len,
                                                          cache_kind=kind, prefill_dtype=prefill_dtype, decode=decode),
                                     constraint=constraint)
        return holder["engine"].generate([Request(ids, px, max_new_tokens=max_new) for ids, px in prompts])

    generate.engine_holder = holder  # type: ignore[attr-defined]  # lets the memory probe drop the engine
    return generate


def build_methods(cfg: BenchConfig, model: Any, tokenizer: Any, max_seq_len: int,
                  export_dir: Path) -> tuple[dict[str, Generate], dict[str, str]]:
    """name -> generate function, and name -> why it is unavailable."""
    from autoui.agent import action_constraint
    from autoui.runtime.cpu_fused import serves
    from autoui.runtime.engine import auto_prefill_dtype
    from autoui.runtime.hf_baseline import HF_QUANTIZED, HFRunner

    constraint = action_constraint(tokenizer, cfg.fmt)
    mb = max(cfg.batches)
    methods: dict[str, Generate] = {"runtime": runtime_method(model, "plain", constraint, mb, max_seq_len),
                                    # HF's exact peer: no constraint, the model's own dtype throughout
                                    "runtime-unconstrained": runtime_method(model, "plain", None, mb, max_seq_len,
                                                                            prefill_dtype="same")}
    for kind in RUNTIME_KINDS[1:]:
        methods[f"runtime-{kind}"] = runtime_method(model, kind, constraint, mb, max_seq_len)
    if auto_prefill_dtype(model) != "same":  # e.g. a bf16 prefill on AMX CPUs: show the plain-dtype peer too
        name = f"runtime-{str(model.dtype).removeprefix('torch.')}-prefill"
        methods[name] = runtime_method(model, "plain", constraint, mb, max_seq_len, prefill_dtype="same")
    if serves(model):  # what the fused CPU kernel adds, in the same run
        methods["runtime-eager"] = runtime_method(model, "plain", constraint, mb, max_seq_len, decode="eager")
    if model.device.type == "cuda":  # opt-in until measured: one-token decode steps replayed as CUDA graphs
        methods["runtime-graphs"] = runtime_method(model, "plain", constraint, mb, max_seq_len, decode="graphs")
        for kind in ("int8", "int4"):
            methods[f"runtime-{kind}-graphs"] = runtime_method(model, kind, constraint, mb, max_seq_len,
                                                               decode="graphs")
    skipped: dict[str, str] = {}
    if cfg.hf:
        # the peer as users run it: the exported fp32 checkpoint; and in the runtime's dtype when that differs
        runs = [("dynamic", torch.float32)] + [(c, torch.float32) for c in HF_QUANTIZED if cfg.hf_quantized]
        if model.dtype != torch.float32:
            runs.append(("dynamic", model.dtype))
        for cache, dtype in runs:
            name = f"hf-{cache}" + ("" if dtype == torch.float32 else "-" + str(dtype).removeprefix("torch."))
            try:
                methods[name] = HFRunner(export_dir, cache, cfg.device, dtype).generate
            except Exception as exc:  # noqa: BLE001 - any load failure is reported, not fatal
                skipped[name] = f"{type(exc).__name__}: {exc}"
    return methods, skipped


def probe(methods: dict[str, Generate], skipped: dict[str, str], prompt: tuple[list[int], torch.Tensor],
          max_new: int) -> None:
    """Run each method once (warm-up); a method that fails is moved to `skipped` with its error."""
    for name in list(methods):
        try:
            methods[name]([prompt], max_new)
        except Exception as exc:  # noqa: BLE001 - e.g. quanto kernels missing: report, keep going
            skipped[name] = f"{type(exc).__name__}: {exc}"[:500]
            del methods[name]
            log.warning("%s cannot run: %s", name, skipped[name])


def measure_latency(gen: Generate, samples: Sequence[Any], inputs: StepInputs, max_new: int,
                    device: torch.device) -> tuple[dict[str, float], list[list[int]]]:
    """Batch-1 agent steps (preprocess + generate) -> ({p50, p95, mean, n} ms, outputs)."""
    times, outs = [], []
    for s in samples:
        holder: list[list[int]] = []
        times.append(_timed(lambda: holder.extend(gen([inputs(s)], max_new)), device))
        outs.append(holder[0])
    stats = {"p50": percentile(times, 50), "p95": percentile(times, 95), "mean": statistics.fmean(times),
             "n": len(times)}
    return {k: round(v, 3) for k, v in stats.items()}, outs


def measure_throughput(gen: Generate, samples: Sequence[Any], inputs: StepInputs, batch: int, max_new: int,
                       repeats: int, device: torch.device) -> float:
    """Agent steps per second at `batch` (preprocess included): median of `repeats` timed batches."""
    chosen = [samples[i % len(samples)] for i in range(batch)]
    gen([inputs(s) for s in chosen], max_new)  # warm-up at this shape
    times = [_timed(lambda: gen([inputs(s) for s in chosen], max_new), device) for _ in range(repeats)]
    return round(batch / (statistics.median(times) / 1e3), 3)


def measure_breakdown(model: Any, methods: dict[str, Generate], samples: Sequence[Any], inputs: StepInputs,
                      max_new: int, device: torch.device) -> dict[str, float]:
    """Where a batch-1 step's time goes (medians, ms): preprocess, vision encoder, and for the
    unconstrained runtime and HF: prefill (one new token) and each further decoded token."""
    med = statistics.median
    out = {"preprocess": med(_timed(lambda: inputs(s), device) for s in samples)}
    pixels = [inputs(s)[1][None].to(device, model.dtype) for s in samples]  # [1, 3, S, S] each
    with torch.no_grad():
        out["vision_encode"] = med(_timed(lambda: model.encode_images(px), device) for px in pixels)
    for name in ("runtime-unconstrained", "hf-dynamic"):
        gen = methods.get(name)
        if gen is None:
            continue
        prefill, per_token = [], []
        for s in samples:
            prompt = inputs(s)
            prefill.append(_timed(lambda: gen([prompt], 1), device))
            n = len(gen([prompt], max_new)[0])
            full = _timed(lambda: gen([prompt], max_new), device)
            if n > 1:
                per_token.append((full - prefill[-1]) / (n - 1))
        out[f"{name}_prefill"] = med(prefill)
        if per_token:
            out[f"{name}_per_token"] = med(per_token)
    return {k: round(v, 3) for k, v in out.items()}


def export_for_hf(model_dir: Path, out: Path | None = None) -> Path:
    """The model exported to a Llava checkpoint (a temporary directory unless `out` is given)."""
    from autoui.model.hf_export import export_hf

    target = out or Path(tempfile.mkdtemp(prefix="autoui-bench-hf-"))
    return export_hf(model_dir, target)


def today() -> str:
    """Today's date, ISO format (the date every reported number carries)."""
    return datetime.date.today().isoformat()
