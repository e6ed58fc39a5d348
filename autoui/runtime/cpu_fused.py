"""The fused CPU kernel: one C++ call per forward instead of hundreds of Python-dispatched ops.

On a CPU a forward of a small model is dispatch-bound: the matmuls of one token take a
fraction of a millisecond, PyTorch's per-op overhead the rest (BENCHMARKS.md). The kernel in
`csrc/cpu_step.cpp` runs the whole decoder (embeddings in, logits out) over the engine's KV
cache (plain fp32, int8, int4, fp8), and the whole vision tower + projector (pixels in, image
features out): matmuls on AMX tiles with fused epilogues (where the CPU has them), through ATen
(MKL / oneDNN) or its own fp16-weight GEMV; norms, RoPE, attention and gates as loops. The
decoder takes "ragged" rows, so one call serves a prefill of prompts of different lengths, a
one-token step, a run of grammar-forced tokens, or a mix. It computes what `autoui.model`
computes (the tests compare logits and greedy tokens); the model stays the one definition of
the math and of the weights. Once loaded it also registers its Pillow-exact screen resize with
`autoui.model.preprocess`. docs/runtime.md, phases 6 and 7.

The C++ source is compiled on first use with `torch.utils.cpp_extension` (~20-60 s, once per
machine: cached under `TORCH_EXTENSIONS_DIR`, by default ~/.cache/torch_extensions; `make
install` builds it). Without a C++ compiler, or for a model or cache it does not cover (not
fp32, not on the CPU, a bf16 cache), `fused_decoder` says why and the engine runs eagerly.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
from pathlib import Path
from typing import Any, Sequence

import torch

from autoui.runtime.cache.config import CacheFullError

log = logging.getLogger("autoui.runtime")

SOURCE = Path(__file__).parent / "csrc" / "cpu_step.cpp"
# -fopenmp: at::parallel_for is a header template whose OpenMP pragma must be compiled here, else
# every "parallel" loop of the kernel runs on one thread
CFLAGS = ("-O3", "-fopenmp", "-mprefer-vector-width=512")
_EXT: dict[str, Any] = {}  # "module" or "error", and "malloc": once per process


def _cpu_signature() -> str:
    """What `-march=native` depends on: the CPU's model name and flags (a build is per machine)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(lines)))


def extension_name(arch: str = "native") -> str:
    """A name that changes with the sources (csrc/*.cpp, *.h), the flags, torch and the CPU (so no stale
    build is reused)."""
    sources = [f.read_text() for f in sorted(SOURCE.parent.iterdir()) if f.suffix in (".cpp", ".h")]
    key = "\n".join([*sources, " ".join(CFLAGS), arch, torch.__version__, _cpu_signature()])
    return "autoui_cpu_step_" + hashlib.sha1(key.encode()).hexdigest()[:12]


def load_extension(arch: str = "native") -> Any:
    """The compiled kernel module (built on first call); raises RuntimeError saying why it cannot be built.

    `arch` is gcc's `-march`: "native" (what serving uses) or an older level such as
    "x86-64-v3" (AVX2, no AVX-512) or "x86-64" (no vector extensions), which the tests build
    to check the kernel's other code paths against the native one."""
    key = "module" if arch == "native" else f"module:{arch}"
    if key in _EXT:
        return _EXT[key]
    if "error" in _EXT and arch == "native":
        raise RuntimeError(_EXT["error"])
    from torch.utils.cpp_extension import load

    name = extension_name(arch)
    log.info("loading the fused CPU decode kernel %s (compiled once per machine, ~20-60 s the first time)", name)
    try:
        _EXT[key] = load(name=name, sources=[str(SOURCE)], extra_cflags=[*CFLAGS, f"-march={arch}"],
                         extra_ldflags=["-fopenmp"], verbose=False)
    except Exception as exc:  # noqa: BLE001 - no compiler, no headers, a failed build: say why, decode eagerly
        error = f"the fused CPU decode kernel could not be built ({type(exc).__name__}: {str(exc)[:300]})"
        if arch == "native":
            _EXT["error"] = error
        raise RuntimeError(error) from exc
    if arch == "native":  # screenshots of this process go through the kernel's Pillow-exact resize from now on
        from autoui.model.preprocess import register_fast_pixels

        if not register_fast_pixels(_EXT[key].screen_pixels):
            log.info("the kernel's screen resize differs from this Pillow's; screens stay with Pillow")
    return _EXT[key]


FUSED_CACHES = ("plain", "int8", "fp8", "int4")


def unsupported(model: Any, cache: Any = None) -> str:
    """Why the fused kernel cannot serve `model` over `cache` (or over a plain fp32 cache when
    `cache` is None); "" when it can."""
    if model.device.type != "cpu":
        return f"the model is on {model.device.type}, the fused kernel is CPU-only"
    if model.dtype != torch.float32:
        return f"the model is {model.dtype}, the fused kernel is fp32-only"
    if cache is None:
        return ""
    if cache.kind not in FUSED_CACHES or (cache.kind == "plain" and cache.k.dtype != torch.float32):
        return f"the {cache.kind} cache ({cache.k.dtype}) is not one the kernel reads (fp32 plain, int8, fp8, int4)"
    if cache.config.head_dim % 2 or cache.config.head_dim > 1024:
        return f"head_dim {cache.config.head_dim} is odd or > 1024"
    return ""


def why_not(model: Any, cache: Any = None) -> str:
    """Why engines on this machine cannot run `model` over `cache` (default: a plain fp32 cache)
    through the fused kernel: `unsupported`'s reason, or why the kernel could not be built; ""
    when they can."""
    reason = unsupported(model, cache)
    if not reason:
        try:
            load_extension()
        except RuntimeError as exc:
            reason = str(exc)
    return reason


def serves(model: Any) -> bool:
    """Whether engines on this machine run `model` (with a plain cache) through the fused kernel."""
    return not why_not(model)


def half_copy(w_t: torch.Tensor) -> torch.Tensor:
    """w_t [in, out] as fp16 [out, in] for the kernel's one- and two-row products, or an empty
    tensor when fp16 would change any weight (then those products stay fp32). Weights saved in
    fp16, as the shipped model's are, convert exactly: the products then see the very same
    numbers at half the bytes, which is what one-row products on a CPU are bound by."""
    half = w_t.t().to(torch.float16)
    if half.shape[1] % 16 or not torch.equal(half.float(), w_t.t()):
        return torch.empty(0, dtype=torch.float16)
    return half.contiguous()


def vision_unsupported(model: Any) -> str:
    """Why the fused kernel cannot run `model`'s vision tower ("" when it can)."""
    cfg = model.config
    if cfg.vision.variant != "siglip" or cfg.feature_select != "full":
        return f"a {cfg.vision.variant} tower with feature_select={cfg.feature_select!r}"
    if cfg.vision.hidden_act not in ("gelu_pytorch_tanh", "gelu"):
        return f"activation {cfg.vision.hidden_act}"
    if model.vision.embeddings.patch_embedding.weight.dtype != torch.float32:
        return "a tower that is not fp32"
    return ""


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MALLOC_KEEP_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of returning it to the OS.

    A batched CPU step allocates and frees tens of MB of activations; by default glibc
    serves blocks that large with fresh mmap()s and trims the heap, so every step pays page
    faults on memory it just had (measured, 2-core Xeon, 2026-12-05: a batch-32 prefill of the
    default model 185 -> 123 ms). This keeps up to 1 GiB of freed blocks in the heap, which is
    what jemalloc / tcmalloc do and what PyTorch's CPU tuning guide recommends them for. It is
    process-wide (every allocation of this process, HF baselines included), done once, and
    skipped where `AUTOUI_MALLOC=default` or libc is not glibc. Returns whether it was applied.
    """
    if _EXT.get("malloc") is not None:
        return _EXT["malloc"]
    applied = False
    if os.environ.get("AUTOUI_MALLOC", "") != "default":
        try:
            libc = ctypes.CDLL("libc.so.6")
            applied = bool(libc.mallopt(M_MMAP_THRESHOLD, MALLOC_KEEP_BYTES)) and bool(
                libc.mallopt(M_TRIM_THRESHOLD, MALLOC_KEEP_BYTES))
        except (OSError, AttributeError):
            applied = False
    if applied:
        log.info("malloc: freed memory kept for reuse (mmap and trim thresholds 1 GiB; AUTOUI_MALLOC=default to skip)")
    _EXT["malloc"] = applied
    return applied


def fused_decoder(model: Any, cache: Any, required: bool = False) -> "FusedModel | None":
    """A `FusedModel` for `model` over `cache`, or None (logged) when it cannot run here.

    `required` raises instead of returning None (`EngineConfig(decode="fused")`)."""
    reason = why_not(model, cache)
    if reason:
        if required:
            raise RuntimeError(f"decode='fused' is not available: {reason}")
        log.info("decode: eager PyTorch (%s)", reason)
        return None
    log.info("decode: fused CPU kernel (%s)", SOURCE.name)
    keep_freed_memory()
    return FusedModel(model, cache)


def vnni_pack(w: torch.Tensor, gated: bool = False) -> torch.Tensor:
    """bf16 weights w [out, in] in AMX's tile order [out/16, in/32, 16, 32] (csrc/amx.h): tile
    (nb, kb), row r holds the pairs w[nb*16 + n, kb*32 + 2r : kb*32 + 2r + 2] for n = 0..15.
    `gated`: w is [gate; up] (two halves of the rows), packed with their 16-row blocks
    alternating (gate 0, up 0, gate 1, ...) so the product's epilogue can apply SiLU(gate) * up."""
    n, k = w.shape
    if gated:
        w = torch.stack([w[: n // 2].reshape(-1, 16, k), w[n // 2:].reshape(-1, 16, k)], dim=1).reshape(n, k)
    return w.reshape(n // 16, 16, k // 32, 16, 2).permute(0, 2, 3, 1, 4).reshape(n // 16, k // 32, 16, 32).contiguous()


def _forms(w_t: torch.Tensor, bf16: bool, amx: bool = False, gated: bool = False) -> list[torch.Tensor]:
    """The kernel's three forms of one weight w_t [in, out]: fp32 [in, out], exact fp16 [out, in] or
    empty, and bf16 or empty: [out, in] (oneDNN's faster layout for many-row products), or packed
    for AMX tiles (`vnni_pack`, `gated` passed on) when `amx` and in, out are multiples of 32."""
    w_t = w_t.detach().float().contiguous()
    bf = w_t.t().to(torch.bfloat16).contiguous() if bf16 else torch.empty(0, dtype=torch.bfloat16)
    if bf16 and amx and w_t.shape[0] % 32 == 0 and w_t.shape[1] % 32 == 0:
        bf = vnni_pack(bf, gated)
    return [w_t, half_copy(w_t), bf]


def _t(*linears) -> torch.Tensor:
    """[in, sum of outs]: x @ _t(a, b) == cat(a(x), b(x)) without biases."""
    return torch.cat([lin.weight for lin in linears]).t()


def _bias(*linears) -> torch.Tensor:
    if linears[0].bias is None:
        return torch.empty(0)
    return torch.cat([lin.bias for lin in linears]).detach().float()


class FusedModel:
    """Forwards of `model` through the C++ kernel: the decoder over `cache` (plain fp32, int8, fp8, int4)
    (`__call__` for decode steps, `forward_embeds` for prefills) and the vision tower +
    projector (`encode_images`, when `vision_unsupported(model)` is "").

    Weights are re-packed (concatenated and transposed; fp16 copies where exact, bf16 copies
    where the CPU multiplies bf16 in hardware) whenever a parameter's storage or version
    changes, so the kernel never reads stale weights after an in-place update; RoPE tables
    come from the model's own `rope_cos_sin`, for every position the cache can hold.
    """

    def __init__(self, model: Any, cache: Any):
        from autoui.model.layers import rope_cos_sin
        from autoui.runtime.engine import cpu_bf16_matmul

        self.model, self.cache, self.ext = model, cache, load_extension()
        self.has_bf16 = bool(cpu_bf16_matmul())
        self.amx = self.has_bf16 and self.ext.has_amx()
        cfg = model.config.decoder
        self.n_heads, self.n_kv_heads, self.eps = cfg.num_heads, cfg.num_kv_heads, float(cfg.rms_norm_eps)
        positions = torch.arange(cache.config.max_seq_len)[None]  # [1, P]
        cos, sin = rope_cos_sin(positions, cfg.resolved_head_dim, cfg.rope_theta, torch.float32)  # [1, 1, P, Dh]
        self.cos, self.sin = cos[0, 0].contiguous(), sin[0, 0].contiguous()  # [P, Dh]
        self.vision_reason = vision_unsupported(model)
        # walking the module tree costs more than the kernel at batch 1, so the parameters are
        # listed once: in-place updates and new storage are seen, replaced Parameter objects are not
        m = model
        self._params = {"decoder": list(m.decoder.parameters()) + ([m.lm_head.weight] if m.lm_head is not None else []),
                        "vision": list(m.vision.parameters()) + list(m.projector.parameters())}
        self._keys: dict[str, tuple] = {}
        self._packed: dict[str, list[torch.Tensor]] = {}

    def _weights(self, part: str) -> list[torch.Tensor]:
        """The kernel's weight list for "decoder" or "vision" (see csrc/cpu_step.cpp), re-packed when stale."""
        key = tuple((p.data_ptr(), p._version) for p in self._params[part])
        if self._keys.get(part) != key:
            with torch.no_grad():
                self._packed[part] = self._pack_decoder() if part == "decoder" else self._pack_vision()
            self._keys[part] = key
        return self._packed[part]

    def _pack_decoder(self) -> list[torch.Tensor]:
        dec, out, bf, amx = self.model.decoder, [], self.has_bf16, self.amx
        for layer in dec.layers:
            a, mlp = layer.self_attn, layer.mlp
            out += [layer.input_layernorm.weight.detach().float(), *_forms(_t(a.q_proj, a.k_proj, a.v_proj), bf, amx),
                    *_forms(_t(a.o_proj), bf, amx), layer.post_attention_layernorm.weight.detach().float(),
                    *_forms(_t(mlp.gate_proj, mlp.up_proj), bf, amx, gated=True), *_forms(_t(mlp.down_proj), bf, amx),
                    _bias(a.q_proj, a.k_proj, a.v_proj)]
        head = self.model.lm_head.weight if self.model.lm_head is not None else dec.embed_tokens.weight
        out += [dec.norm.weight.detach().float(), *_forms(head.t(), bf, amx)]
        return [w.contiguous() for w in out]

    def _pack_vision(self) -> list[torch.Tensor]:
        vis, bf, amx = self.model.vision, self.has_bf16, self.amx

        def lin(*linears) -> list[torch.Tensor]:  # fp32, bf16 (or empty), bias
            fp32, _, bf16 = _forms(_t(*linears), bf, amx)
            return [fp32, bf16, _bias(*linears)]

        emb = vis.embeddings
        patch = emb.patch_embedding.weight.flatten(1).t()  # [C * p * p, Dv]
        fp32, _, bf16 = _forms(patch, bf, amx)
        bias = emb.patch_embedding.bias.detach().float() if emb.patch_embedding.bias is not None else torch.empty(0)
        out = [fp32, bf16, bias, emb.position_embedding.weight.detach().float()]
        for layer in vis.encoder.layers[: self.model.config.num_vision_layers_used]:
            at = layer.self_attn
            out += [layer.layer_norm1.weight, layer.layer_norm1.bias, *lin(at.q_proj, at.k_proj, at.v_proj),
                    *lin(at.out_proj), layer.layer_norm2.weight, layer.layer_norm2.bias, *lin(layer.mlp.fc1),
                    *lin(layer.mlp.fc2)]
        pj = self.model.projector
        out += [*lin(pj.linear_1), *lin(pj.linear_2)]
        return [w.detach().float().contiguous() if w.dtype == torch.float32 else w.contiguous() for w in out]

    @torch.no_grad()
    def encode_images(self, pixel_values: torch.Tensor | Sequence[torch.Tensor], bf16: bool = False) -> torch.Tensor:
        """pixel_values [B, 3, S, S] (or B tensors [3, S, S]) -> projected features [B, P, D], as
        `model.encode_images`. A list is cut into patches straight from each tensor (no stacked copy).

        `bf16` runs the matmuls in bf16 (activations stay fp32) where the CPU has bf16 hardware."""
        if self.vision_reason:
            raise RuntimeError(f"the fused kernel cannot run this vision tower: {self.vision_reason}")
        cfg = self.model.config.vision
        images = list(pixel_values)
        if not images:
            raise ValueError("encode_images needs at least one image")
        if any(im.shape != (cfg.num_channels, cfg.image_size, cfg.image_size) for im in images):
            raise ValueError(f"pixel_values must be [B, {cfg.num_channels}, {cfg.image_size}, {cfg.image_size}] (or "
                             f"B tensors of [{cfg.num_channels}, ...]), got images of {sorted({tuple(im.shape) for im in images})}")
        bf16 = bf16 and self.has_bf16
        patches = self.ext.patchify([im.float().contiguous() for im in images], cfg.patch_size, bf16)
        feats = self.ext.vision_forward(patches, len(images), self._weights("vision"),
                                        self.model.config.num_vision_layers_used, cfg.num_heads,
                                        float(cfg.layer_norm_eps), cfg.hidden_act == "gelu_pytorch_tanh", bf16)
        return feats.view(len(images), -1, feats.shape[-1])

    @torch.no_grad()
    def __call__(self, slots: Sequence[int], new_tokens: Sequence[Sequence[int]], bf16: bool = False) -> torch.Tensor:
        """Feed sequence b (in cache slot `slots[b]`) its `new_tokens[b]`; logits [B, V] after each one's
        last. `bf16`: as in `forward_embeds`."""
        ids = torch.tensor([t for toks in new_tokens for t in toks])
        x = self.model.decoder.embed_tokens.weight.index_select(0, ids).float()  # [N, D], a fresh tensor
        return self.forward_embeds(slots, x, [len(toks) for toks in new_tokens], bf16, overwrite=True)

    @torch.no_grad()
    def forward_embeds(self, slots: Sequence[int], x: torch.Tensor, counts: Sequence[int],
                       bf16: bool = False, overwrite: bool = False) -> torch.Tensor:
        """Rows x [N, D] are the next `counts[b]` input embeddings of the sequence in `slots[b]`
        (in that order); logits [B, V] after each sequence's last row. Advances the slots'
        lengths, as a `CacheView` forward does. `bf16`: products of more than two rows in bf16.
        `overwrite`: x is a contiguous fp32 tensor the caller no longer needs; the kernel keeps
        its residual stream there instead of in a copy."""
        if not overwrite:
            x = x.detach().to(torch.float32, copy=True)
        if x.dtype != torch.float32 or not x.is_contiguous():
            raise ValueError(f"overwrite=True needs contiguous fp32 rows, got {x.dtype}")
        cache = self.cache
        slots = cache._check_slots(slots)
        counts = [int(n) for n in counts]
        if len(counts) != len(slots) or min(counts, default=0) < 1 or sum(counts) != x.shape[0]:
            raise ValueError(f"need >= 1 row for each of the {len(slots)} slots and {x.shape[0]} rows in all, "
                             f"got counts {counts}")
        lengths = cache.lengths.tolist()  # host bookkeeping in Python ints: a decode step is ~100 us of it
        start = [lengths[s] for s in slots]
        end = [a + n for a, n in zip(start, counts)]
        over = [(s, e) for s, e in zip(slots, end) if e > cache.config.max_seq_len]
        if over:
            raise CacheFullError(f"(slot, length) {over} would exceed max_seq_len={cache.config.max_seq_len}")
        if all(n == 1 for n in counts):
            slot_rows, pos, last = torch.tensor(slots), torch.tensor(start), torch.arange(len(slots))
        else:  # row i of sequence b: slot slots[b], position start[b] + (i - its first row)
            counts_t = torch.tensor(counts)
            last = counts_t.cumsum(0) - 1
            slot_rows = torch.tensor(slots).repeat_interleave(counts_t)
            pos = torch.arange(x.shape[0]) + (torch.tensor(start) - last + counts_t - 1).repeat_interleave(counts_t)
        none = torch.empty(0)
        extra = [getattr(cache, name, none) for name in ("k_scale", "v_scale", "k_offset", "v_offset")]
        logits = self.ext.ragged_forward(x, slot_rows, pos, last, cache.k, cache.v, *extra, self.cos,
                                         self.sin, self._weights("decoder"), self.n_heads, self.n_kv_heads, self.eps,
                                         bf16 and self.has_bf16)
        cache.lengths[slots] = torch.tensor(end, dtype=cache.lengths.dtype)
        return logits


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m autoui.runtime.cpu_fused --build`: compile the kernel now (make install does)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="compile (or find) the kernel and print its name")
    args = parser.parse_args(argv)
    if not args.build:
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        module = load_extension()
    except RuntimeError as exc:
        print(f"not built: {exc}; the runtime will decode eagerly")
        return 0  # optional: never fails an install
    print(f"fused CPU decode kernel ready: {module.__name__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
