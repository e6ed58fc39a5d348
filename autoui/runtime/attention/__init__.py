"""Attention backends and their automatic selection.

Two kinds of backend:
- dense: attention over keys/values already restored to the model's dtype, laid out
  [B, L, Hkv, D]; `reference` (explicit float32 math) and `sdpa` (PyTorch's fused SDPA).
- fused: reads the cache buffers itself for the steps it supports: `flash-attn`
  (plain cache, CUDA) and `triton-decode` (plain/int8/int4 caches, decode steps, CUDA).
A step a fused backend does not support goes through the dense one. `select_backend`
picks once per cache and logs one line on the "autoui.runtime" logger.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

from autoui.runtime.attention.flash import FlashKVCacheAttention, flash_available
from autoui.runtime.attention.reference import reference_attention
from autoui.runtime.attention.sdpa import sdpa_attention
from autoui.runtime.attention.triton_decode import TRITON_KINDS, TritonDecodeAttention, triton_available
from autoui.runtime.cache.config import CacheConfig, CacheConfigError

log = logging.getLogger("autoui.runtime")

DENSE: dict[str, Callable] = {"reference": reference_attention, "sdpa": sdpa_attention}


class AttentionBackend:
    """A dense attention function plus the fused backends to try first."""

    def __init__(self, dense: str, fused: list | None = None):
        self.dense_name, self.dense = dense, DENSE[dense]
        self.fused = list(fused or [])

    def describe(self) -> str:
        """One line: the dense backend and the fused ones in order of preference."""
        names = [f.name for f in self.fused]
        return self.dense_name + (" + fused " + ", ".join(names) if names else "")

    def attend(self, cache, layer: int, q: torch.Tensor, view) -> torch.Tensor:
        """Attention of `q` [B, Hq, T, D] over the view's sequences in `cache` (k/v already written)."""
        T = q.shape[2]
        if view.fused is None:  # decided once per view: the same for every layer
            view.fused = next((f for f in self.fused if f.supports(cache, view, T)), False)
        if view.fused:
            return view.fused(cache, layer, q, view)
        k, v = cache._gather(layer, view.selection, view.max_len, q.dtype)  # [B, L, Hkv, D]
        kind, mask = view.mask(T)
        return self.dense(q, k, v, kind, mask)


def _dense_for(config: CacheConfig) -> str:
    if config.attention in DENSE:
        return config.attention
    # SDPA is faster than the reference on CPU too (measured: train/bench_runtime.py), and on CUDA
    # it reaches FlashAttention-2 for fp16/bf16
    return "sdpa"


def select_backend(config: CacheConfig) -> AttentionBackend:
    """Pick the backend for a cache built from `config` and log the choice."""
    device, choice = config.device, config.attention
    fused = []
    if choice == "flash" and not flash_available():
        raise CacheConfigError("attention='flash' needs the flash-attn package and a CUDA device")
    if choice == "triton":
        if config.kind not in TRITON_KINDS:
            raise CacheConfigError(f"attention='triton' serves the {'/'.join(TRITON_KINDS)} caches, "
                                   f"not kind={config.kind!r}")
        if not triton_available(device):
            raise CacheConfigError("attention='triton' needs triton and a CUDA device (or TRITON_INTERPRET=1 on CPU)")
    if choice in ("auto", "flash") and config.kind == "plain" and device.type == "cuda" and flash_available():
        fused.append(FlashKVCacheAttention())
    # on CUDA the kernel reads each sequence's slot in place up to its own length: no gather,
    # no mask; for the plain cache "auto" uses it in static (CUDA-graph) decode steps only
    auto_triton = choice == "auto" and config.kind in TRITON_KINDS and device.type == "cuda"
    if choice == "triton" or (auto_triton and triton_available(device)):
        fused.append(TritonDecodeAttention(forced=choice == "triton"))
    backend = AttentionBackend(_dense_for(config), fused)
    log.info("attention backend for the %s cache on %s: %s", config.kind, device, backend.describe())
    return backend


__all__ = ["AttentionBackend", "DENSE", "reference_attention", "sdpa_attention", "select_backend"]
