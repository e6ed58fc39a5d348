"""Static-shape decode steps, replayed as CUDA graphs.

A decode step of a small model on a GPU is launch-bound: a few hundred tiny kernels, each
queued by Python. Here a one-token-per-sequence step runs through a `StaticDecodeView`
whose every per-step value (token ids, cache slots, write positions) lives in a device
tensor and whose attention spans a fixed number of keys (`L`, the longest sequence rounded
up to a multiple of `bucket`; the rest is masked). Such a step has the same shapes and
addresses every time, so on CUDA it is captured once per (batch size, L) into a
`torch.cuda.CUDAGraph` and replayed: one launch instead of hundreds.

Modes (`EngineConfig.decode`): "graphs" captures and replays (CUDA only); "static" runs
the same static step eagerly (any device: this is how CPU tests check the static path
against the engine's dynamic one); "eager" (and for now "auto") does not use this module.
A capture that fails is logged once and the engine goes on eagerly (`DecodeGraphs.broken`
says why). On CUDA the attention of a static step is the `triton-decode` kernel, which reads
each slot in place up to its own length (SDPA would need a gather of the slots and a mask).

Steps that feed several tokens at once (a grammar-forced run) and prefills stay eager.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from autoui.runtime.cache.config import CacheFullError

log = logging.getLogger("autoui.runtime")


class StaticDecodeView:
    """The `AttentionCache` of a captured one-token step: slots, positions and lengths are device
    tensors read at replay time; attention covers the first `max_len` keys of each slot, masked
    to the sequence's own length. Lengths on the host are advanced by `DecodeGraphs`, not here."""

    T = 1
    uniform = True
    static = True  # lets `triton-decode` serve the plain cache here (no gather, no mask)

    def __init__(self, cache, slot_index: torch.Tensor, start: torch.Tensor, max_len: int):
        self.cache, self.n_layers, self.max_len = cache, cache.config.n_layers, max_len
        self.slot_index = self.selection = slot_index  # [B] long
        self.start = start  # [B] long: tokens cached before this step (= the write position)
        self.fused = None  # chosen by the backend at the first attend; T is always 1 here
        self.begin()

    def begin(self) -> None:
        """Recompute what depends on the inputs; call at the start of every (captured) forward."""
        self.k_len = self.start + 1  # [B]
        self._mask = None

    def position_ids(self, T: int | None = None) -> torch.Tensor:
        return self.start[:, None]  # [B, 1]

    def mask(self, T: int) -> tuple[str, torch.Tensor]:
        if self._mask is None:
            j = torch.arange(self.max_len, device=self.start.device)  # [L]
            self._mask = (j[None, :] < self.k_len[:, None])[:, None, None, :]  # [B, 1, 1, L]
        return "explicit", self._mask

    def attend(self, layer_idx: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        self.cache._write(layer_idx, self.slot_index, self.start, k[:, :, 0], v[:, :, 0])  # [B, Hkv, D]
        return self.cache.backend.attend(self.cache, layer_idx, q, self)  # [B, Hq, 1, D]


@dataclass
class _Step:
    """One (batch size, L) shape: its input buffer [3, B] (ids, slots, starts), view and runner.
    The view is kept so that the tensors a graph wrote at capture (lengths, mask) stay its own."""

    inputs: torch.Tensor
    view: StaticDecodeView
    run: Callable[[], torch.Tensor]


class DecodeGraphs:
    """One-token decode steps of `model` over `cache` at static shapes, captured on CUDA when `capture`."""

    def __init__(self, model, cache, capture: bool, bucket: int = 128):
        if capture and cache.config.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device; use the 'static' or 'eager' decode mode elsewhere")
        self.model, self.cache, self.capture, self.bucket = model, cache, capture, bucket
        self.steps: dict[tuple[int, int], _Step] = {}
        self.pool = torch.cuda.graph_pool_handle() if capture else None
        self.broken = ""  # why capturing failed (then the engine decodes eagerly)

    def key(self, lengths: torch.Tensor) -> tuple[int, int]:
        """(batch size, keys attended) for sequences holding `lengths` tokens before the step."""
        longest = int(lengths.max()) + 1
        limit = self.cache.config.max_seq_len
        if longest > limit:
            raise CacheFullError(f"a sequence would grow to {longest} tokens, past max_seq_len={limit}")
        return len(lengths), min(limit, -(-longest // self.bucket) * self.bucket)

    def __call__(self, slots: Sequence[int], token_ids: Sequence[int]) -> torch.Tensor | None:
        """Logits [B, V] of one decode step (every sequence feeds one token), or None when the
        graphs are broken and the caller must decode eagerly. Advances the slots' lengths."""
        if self.broken:
            return None
        lengths = self.cache.lengths[list(slots)]  # [B] host
        key = self.key(lengths)
        host = torch.tensor([list(token_ids), list(slots), lengths.tolist()], dtype=torch.long)  # [3, B]
        step = self.steps.get(key)
        if step is None:
            step = self._build(*key, host)
            if step is None:
                return None
        else:
            step.inputs.copy_(host)
        logits = step.run()
        self.cache.lengths[list(slots)] = lengths + 1
        return logits

    def _build(self, B: int, L: int, host: torch.Tensor) -> _Step | None:
        inputs = host.to(self.cache.config.device)
        view = StaticDecodeView(self.cache, inputs[1], inputs[2], L)
        decoder, model = self.model.decoder, self.model

        def forward() -> torch.Tensor:
            view.begin()
            embeds = decoder.embed_tokens(inputs[0][:, None])  # [B, 1, D]
            hidden = decoder(embeds, view.position_ids(), cache=view)  # [B, 1, D]
            return model.logits(hidden[:, 0])  # [B, V]

        if not self.capture:
            step = _Step(inputs, view, forward)
        else:
            try:
                step = _Step(inputs, view, self._capture(forward, inputs))
            except Exception as exc:  # noqa: BLE001 - any capture failure: fall back, say why once
                self.broken = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("CUDA graph capture failed (%s); decoding eagerly from now on", self.broken)
                return None
            log.info("captured a decode step for batch %d over %d keys (%d shapes so far)", B, L, len(self.steps) + 1)
        self.steps[(B, L)] = step
        return step

    def _capture(self, forward: Callable[[], torch.Tensor], inputs: torch.Tensor) -> Callable[[], torch.Tensor]:
        # warm-up on a side stream (as torch's docs ask); it writes the same K/V the step will
        # write again, so running it is harmless
        side = torch.cuda.Stream(device=inputs.device)
        side.wait_stream(torch.cuda.current_stream(inputs.device))
        with torch.cuda.stream(side):
            forward()
        torch.cuda.current_stream(inputs.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            logits = forward()

        def replay() -> torch.Tensor:
            graph.replay()
            return logits

        return replay
