"""Batched generation for `AutoUIModel` over the runtime's KV caches (first version).

Each request is a prompt (ids with the image placeholders) plus its screenshot. A request
is prefilled once (the screenshot encoded once, prompts of different lengths batched with
right padding), then decoded one token per `step` together with every other active
request. Requests join and leave between steps; a finished request frees its cache slot
at once. Decoding is greedy, optionally under an `ActionConstraint` (valid actions only);
under a constraint, tokens the grammar forces are appended without logits and fed to the
model in one multi-token forward at the next step (a forced EOS costs no forward at all).

On a CPU, every decoder forward (prefills, one-token steps and forced runs alike) and the
vision tower go through one C++ call each by default (`autoui.runtime.cpu_fused`,
`EngineConfig(decode="fused")`; "auto" picks it on CPUs): a step of a small model is
dispatch-bound there.
One-token decode steps can run at static shapes (`autoui.runtime.graphs`), captured on CUDA
once per (batch size, key bucket) as CUDA graphs and replayed: `EngineConfig(decode="graphs")`.
That path has not run on a GPU yet (none was lent when it was written; `train/gpu_check.sh`
checks and measures it), so "auto" still means eager on GPUs. Not here: sampling, prefix
caching.
"""
from __future__ import annotations

import copy
import itertools
import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from autoui.runtime.cache import CACHE_KINDS, CacheConfig, make_cache
from autoui.runtime.constrained import ActionConstraint, ConstraintState

log = logging.getLogger("autoui.runtime")


class EngineError(ValueError):
    """A request or engine setting the engine cannot serve (the message says which and why)."""


@dataclass
class EngineConfig:
    """Capacity and cache choice of an `Engine`."""

    max_batch: int = 8
    max_seq_len: int = 1024
    cache_kind: str = "plain"
    attention: str = "auto"
    max_new_tokens: int = 32
    prefill_dtype: str = "auto"  # "auto" | "same" | a torch dtype name: see `prefill_model`
    decode: str = "auto"  # "auto" | "eager" | "fused" | "static" | "graphs": see `decode_runners`

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_seq_len", "max_new_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise EngineError(f"EngineConfig.{name} must be a positive int, got {value!r}")
        if self.cache_kind not in CACHE_KINDS:
            raise EngineError(f"EngineConfig.cache_kind must be one of {CACHE_KINDS}, got {self.cache_kind!r}")
        if self.prefill_dtype not in PREFILL_DTYPES:
            raise EngineError(f"EngineConfig.prefill_dtype must be one of {PREFILL_DTYPES}, got {self.prefill_dtype!r}")
        if self.decode not in DECODE_MODES:
            raise EngineError(f"EngineConfig.decode must be one of {DECODE_MODES}, got {self.decode!r}")


PREFILL_DTYPES = ("auto", "same", "float32", "bfloat16", "float16")
DECODE_MODES = ("auto", "eager", "fused", "static", "graphs")


def decode_runners(model, cache, mode: str):
    """(fused, graphs): the runners that serve decode steps in `mode`; (None, None) means eager.

    "fused" runs every decoder forward after the prefill through the C++ CPU kernel
    (`autoui.runtime.cpu_fused`; an error when it cannot serve this model and cache), and the
    prefill too unless `prefill_dtype` asks for float16. "auto" uses that kernel on a CPU
    whenever it can and no attention backend was pinned (the log says which path was taken),
    and is eager elsewhere, until the CUDA-graph path has been measured on a GPU (see the module
    docstring). "graphs" captures CUDA graphs of one-token steps (CUDA only); "static" runs
    the same static step without capturing (any device: the CPU tests of the graph path use it).
    """
    if mode == "graphs" and model.device.type != "cuda":
        raise EngineError("EngineConfig.decode='graphs' needs a model on a CUDA device ('static' runs anywhere)")
    if mode == "fused" or (mode == "auto" and model.device.type == "cpu" and cache.config.attention == "auto"):
        from autoui.runtime.cpu_fused import fused_decoder

        try:
            return fused_decoder(model, cache, required=mode == "fused"), None
        except RuntimeError as exc:
            raise EngineError(str(exc)) from exc
    if mode in ("eager", "auto"):
        return None, None
    from autoui.runtime.graphs import DecodeGraphs

    return None, DecodeGraphs(model, cache, capture=mode == "graphs")


def _cpu_probe(name: str) -> bool:
    probe = getattr(torch.cpu, name, None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def cpu_bf16_matmul() -> str:
    """How this CPU multiplies bf16 matrices in hardware: "AMX", "AVX512-BF16", or "" (it does not).

    Measured on 2-core machines: AMX tiles run many-row bf16 matmuls ~5x faster than fp32;
    AVX512-BF16 (e.g. AMD Zen 4) ~2.3x; plain AVX-512 (Ice Lake) converts and runs them ~4x
    *slower* than fp32, so there bf16 is never the fast choice.
    """
    if _cpu_probe("_is_amx_tile_supported"):
        return "AMX"
    return "AVX512-BF16" if _cpu_probe("_is_avx512_bf16_supported") else ""


def auto_prefill_dtype(model) -> str:
    """What "auto" means for `model`: "bfloat16" for an fp32 model on a CPU with bf16 matmuls, else "same"."""
    fast_bf16 = model.device.type == "cpu" and model.dtype == torch.float32 and bool(cpu_bf16_matmul())
    return "bfloat16" if fast_bf16 else "same"


def prefill_model(model, prefill_dtype: str = "auto"):
    """The model that runs prefills: `model` itself, or a copy of it in another dtype.

    "auto" picks a bf16 copy for an fp32 model on a CPU that multiplies bf16 in hardware
    (`cpu_bf16_matmul`): there, many-row matmuls (vision tower, prefill) run 2-5x faster in
    bf16, while the one-row matmuls of decoding do not gain (AMX: ~3x slower), so decoding
    keeps the fp32 weights (measured: BENCHMARKS.md). The copy costs half the fp32 weights'
    memory. Anywhere else "auto" means "same".
    """
    if prefill_dtype == "auto":
        prefill_dtype = auto_prefill_dtype(model)
    if prefill_dtype == "same" or getattr(torch, prefill_dtype) == model.dtype:
        return model
    twin = copy.deepcopy(model).to(getattr(torch, prefill_dtype)).eval()
    log.info("prefill in %s, decode in %s", prefill_dtype, str(model.dtype).removeprefix("torch."))
    return twin


def cache_config(decoder_config, kind: str, dtype, device="cpu", max_batch: int = 1, max_seq_len: int = 8,
                 attention: str = "auto") -> CacheConfig:
    """The engine's `CacheConfig` for a decoder (int4 groups: 64, or the whole head when it is smaller)."""
    return CacheConfig.for_decoder(decoder_config, kind=kind, dtype=dtype, device=device, max_batch=max_batch,
                                   max_seq_len=max_seq_len, attention=attention)


@dataclass(eq=False)
class Request:
    """One prompt to continue. `tokens` fills in as the engine generates (EOS included)."""

    input_ids: Sequence[int]
    pixel_values: torch.Tensor | None = None  # [3, S, S], or None for a text-only prompt
    max_new_tokens: int | None = None
    tokens: list[int] = field(default_factory=list)
    fed: int = 0  # how many of `tokens` the model has seen (their K/V are cached)
    done: bool = False
    slot: int = -1
    grammar_state: int = 0
    type_candidates: tuple[str, ...] | None = None  # typed text must be one of these (see copy_text)


class Engine:
    """Owns a KV cache sized by `EngineConfig` and runs requests through `model`."""

    def __init__(self, model, config: EngineConfig | None = None, constraint: ActionConstraint | None = None):
        self.model = model.eval()
        self.config = config or EngineConfig()
        c = self.config
        self.cache = make_cache(cache_config(model.config.decoder, c.cache_kind, model.dtype, model.device,
                                             c.max_batch, c.max_seq_len, c.attention))
        self.fused, self.graphs = decode_runners(self.model, self.cache, c.decode)
        # the fused kernel prefills too, in fp32 or with bf16 matmuls (no bf16 copy of the model)
        dtype = auto_prefill_dtype(model) if c.prefill_dtype == "auto" else c.prefill_dtype
        self.fused_prefill = self.fused is not None and dtype in ("same", "float32", "bfloat16")
        self.prefill_bf16 = dtype == "bfloat16"
        # with bf16 prefills on an AMX CPU, the kernel's decode steps multiply in bf16 on the tiles
        # too, at every batch size (a 32-sequence step 2.6 -> 1.5 ms, 2-core Xeon, 2026-12-05). Each
        # row's arithmetic there does not depend on the other rows, so a request gets the same
        # tokens alone or in any batch. Elsewhere decode stays fp32.
        self.decode_bf16 = self.fused_prefill and self.prefill_bf16 and self.fused.amx
        if self.fused_prefill:
            log.info("prefill: fused CPU kernel, %s matmuls; decode: %s", "bf16" if self.prefill_bf16 else "fp32",
                     "bf16 on AMX tiles" if self.decode_bf16 else "fp32")
        self.prefiller = self.model if self.fused_prefill else prefill_model(self.model, c.prefill_dtype)
        self.eos_id, self.pad_id = model.config.eos_token_id, model.config.pad_token_id
        if constraint is not None and constraint.eos_id != self.eos_id:
            raise EngineError(f"the constraint's eos id {constraint.eos_id} differs from the model's {self.eos_id}")
        self.constraint = constraint
        self._forced = constraint.forced() if constraint is not None else {}
        self._typed = None
        if constraint is not None and constraint.fmt == "compact":
            from autoui.runtime.copy_text import TypedTextFilter

            self._typed = TypedTextFilter(constraint.pieces, constraint.eos_id, constraint.plan)
        self.waiting: list[Request] = []
        self.active: list[Request] = []
        self.counts = {"prefills": 0, "decode_forwards": 0}  # batched forwards run so far (benchmarks read them)

    def submit(self, request: Request) -> Request:
        """Queue a request; it is prefilled at the next `step` with a free slot."""
        n = len(request.input_ids)
        if request.max_new_tokens is None:
            request.max_new_tokens = self.config.max_new_tokens
        if n == 0:
            raise EngineError("a request needs at least one prompt token")
        if n + request.max_new_tokens - 1 > self.config.max_seq_len:
            raise EngineError(f"prompt of {n} tokens + {request.max_new_tokens} new ones exceeds "
                              f"max_seq_len={self.config.max_seq_len}")
        if self.constraint is not None and request.max_new_tokens < self.constraint.min_new_tokens:
            raise EngineError(f"max_new_tokens={request.max_new_tokens} cannot hold a complete action "
                              f"(needs {self.constraint.min_new_tokens})")
        self.waiting.append(request)
        return request

    @torch.no_grad()
    def step(self) -> list[Request]:
        """One decode step for the active requests, then prefill of newly admitted ones.

        Every request in the step gains one token. Returns the requests that finished.
        """
        decoding = list(self.active)
        if self.waiting and not decoding and not self.cache.free_slots:
            raise EngineError(f"no free cache slot for {len(self.waiting)} waiting request(s) and none active: "
                              "the cache's slots were allocated outside this engine")
        admitted = self.waiting[: self.cache.free_slots]
        self.waiting = self.waiting[len(admitted):]
        if decoding:
            self._decode(decoding)
        for group in (
                [r for r in admitted if r.pixel_values is not None], [r for r in admitted if r.pixel_values is None]):
            if group:
                self._prefill(group)
        self.active = decoding + admitted
        finished = [r for r in self.active if r.done]
        if finished:
            self.cache.free([r.slot for r in finished])
            self.active = [r for r in self.active if not r.done]
        return finished

    def reset(self) -> None:
        """Drop every waiting and active request and free all slots (after an error, say)."""
        self.waiting, self.active = [], []
        self.cache.reset()

    def generate(self, requests: Sequence[Request]) -> list[list[int]]:
        """Run `requests` to completion; their generated ids (EOS included when produced)."""
        for r in requests:
            self.submit(r)
        while self.waiting or self.active:
            self.step()
        return [r.tokens for r in requests]

    # -- internals ----------------------------------------------------------------------
    def _prefill(self, reqs: list[Request]) -> None:
        dev = self.model.device
        self.counts["prefills"] += 1
        for r, slot in zip(reqs, self.cache.allocate(len(reqs))):
            r.slot = slot
        lens = [len(r.input_ids) for r in reqs]
        if self.fused_prefill:
            self._choose(reqs, self._fused_prefill(reqs, lens).float())
            return
        ids = torch.full((len(reqs), max(lens)), self.pad_id, dtype=torch.long)  # right padding
        for b, r in enumerate(reqs):
            ids[b, : lens[b]] = torch.as_tensor(list(r.input_ids), dtype=torch.long)
        pixels = None
        model = self.prefiller
        if reqs[0].pixel_values is not None:
            pixels = torch.stack([r.pixel_values for r in reqs]).to(dev, model.dtype)  # [B, 3, S, S]
        embeds = model.embed(pixels, ids.to(dev))  # [B, T, D], each screenshot encoded once
        view = self.cache.view([r.slot for r in reqs], lens)
        hidden = model.decoder(embeds, view.position_ids(), cache=view)  # [B, T, D]
        last = hidden[torch.arange(len(reqs), device=dev), torch.tensor(lens, device=dev) - 1]  # [B, D]
        self._choose(reqs, model.logits(last).float())

    def _fused_prefill(self, reqs: list[Request], lens: list[int]) -> torch.Tensor:
        """Logits [B, V] of the prompts' last tokens, through the fused CPU kernel (tower included when it
        can). The prompts go in unpadded, one after another; image features replace their placeholders."""
        ids = torch.from_numpy(np.fromiter(itertools.chain.from_iterable(r.input_ids for r in reqs), np.int64,
                                           sum(lens)))  # [sum(lens)]
        rows = self.model.decoder.embed_tokens.weight.index_select(0, ids).float()  # [sum(lens), D], fresh
        is_image = ids == self.model.config.image_token_id
        images = [r.pixel_values for r in reqs if r.pixel_values is not None]
        counts = torch.stack([part.sum() for part in is_image.split(lens)]).tolist()
        self.model.check_image_tokens(counts, len(images) if images else None)  # as the eager path's `embed`
        if images:
            if self.fused.vision_reason:  # the tower in PyTorch, the decoder in the kernel
                feats = self.model.encode_images(torch.stack(images).to(self.model.dtype))
            else:
                feats = self.fused.encode_images(images, self.prefill_bf16)  # [B, N_img, D]
            rows[is_image] = feats.reshape(-1, rows.shape[1]).to(rows.dtype)
        return self.fused.forward_embeds([r.slot for r in reqs], rows, lens, self.prefill_bf16, overwrite=True)

    def _decode(self, reqs: list[Request]) -> None:
        """Feed each request its unseen tokens (one, or a run of grammar-forced ones) and choose the next."""
        lens = [len(r.tokens) - r.fed for r in reqs]
        self.counts["decode_forwards"] += 1
        logits = None
        if self.fused is not None:  # one C++ call, ragged runs included
            logits = self.fused([r.slot for r in reqs], [r.tokens[r.fed:] for r in reqs], self.decode_bf16)
        elif max(lens) == 1 and self.graphs is not None:  # static shapes (a CUDA graph replay on CUDA)
            logits = self.graphs([r.slot for r in reqs], [r.tokens[-1] for r in reqs])  # None: graphs broke
        if logits is None:
            logits = self._forward(reqs, lens)
        for r in reqs:
            r.fed = len(r.tokens)
        self._choose(reqs, logits.float())

    def _forward(self, reqs: list[Request], lens: list[int]) -> torch.Tensor:
        """Logits [B, V] after feeding each request its last `lens[b]` tokens through a `CacheView`."""
        dev = self.model.device
        if max(lens) == 1:  # the usual step: one token each, no padding
            ids = torch.tensor([[r.tokens[-1]] for r in reqs])  # [B, 1]
        else:
            ids = torch.full((len(reqs), max(lens)), self.pad_id, dtype=torch.long)  # [B, T] right padding
            for b, r in enumerate(reqs):
                ids[b, : lens[b]] = torch.tensor(r.tokens[r.fed:])
        embeds = self.model.decoder.embed_tokens(ids.to(dev))  # [B, T, D]
        view = self.cache.view([r.slot for r in reqs], lens)
        hidden = self.model.decoder(embeds, view.position_ids(), cache=view)  # [B, T, D]
        last = hidden[:, 0] if max(lens) == 1 else hidden[torch.arange(len(reqs)), torch.tensor(lens) - 1]  # [B, D]
        return self.model.logits(last)

    def _choose(self, reqs: list[Request], logits: torch.Tensor) -> None:
        """Greedy next token per request (under the constraint if any); mark finished ones."""
        state = None
        if self.constraint is not None:
            state = ConstraintState(self.constraint, 0)
            state.states = [r.grammar_state for r in reqs]
            allowed = state.allowed(logits.shape[1], [r.max_new_tokens - len(r.tokens) for r in reqs])
            ids = self._masked_argmax(logits, self._copy_from_goal(reqs, allowed.to(logits.device))).tolist()
        else:
            ids = logits.max(-1).indices.tolist()  # the first maximum, as argmax (and faster)
        if state is not None:
            state.advance(ids)
        for b, (r, t) in enumerate(zip(reqs, ids)):
            r.tokens.append(t)
            if state is not None:
                r.grammar_state = state.states[b]
            r.done = t == self.eos_id or len(r.tokens) >= r.max_new_tokens
            if self.constraint is not None:
                self._jump_forward(r)

    def _masked_argmax(self, logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """[B]: each row's first largest logit among its allowed tokens (the fused kernel's loop on CPUs)."""
        if self.fused is not None and logits.dtype == torch.float32:
            return self.fused.ext.masked_argmax(logits.contiguous(), allowed.contiguous())
        return logits.masked_fill(~allowed, float("-inf")).max(-1).indices

    def _copy_from_goal(self, reqs: list[Request], allowed: torch.Tensor) -> torch.Tensor:
        """Keep typed text on each request's candidates, where the grammar leaves a choice that does."""
        if self._typed is None or not any(r.type_candidates for r in reqs):
            return allowed
        for b, r in enumerate(reqs):
            if not r.type_candidates:
                continue
            mask = self._typed.allowed(r.tokens, r.type_candidates, allowed.shape[1])
            if mask is None:
                continue
            mask = mask.to(allowed.device) & allowed[b]
            if bool(mask.any()):  # never strand a request: with no overlap the grammar alone decides
                allowed[b] = mask
        return allowed

    def _jump_forward(self, r: Request) -> None:
        """Append the tokens the grammar forces (no logits needed; the same tokens greedy would pick).

        A forced EOS ends the request without another forward; other forced tokens are fed
        to the model together at the next decode step.
        """
        forced = self._forced
        while not r.done and r.grammar_state in forced:
            t, r.grammar_state = forced[r.grammar_state]
            r.tokens.append(t)
            r.done = t == self.eos_id or len(r.tokens) >= r.max_new_tokens
