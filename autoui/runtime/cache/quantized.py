"""Quantized KV caches: int8, int4 and fp8 storage with per-token scales.

Reads restore only the requested slots' first `length` tokens (never the whole pool)
to the model's dtype for the dense attention backends; the fused Triton decode kernel
reads the raw buffers instead (see autoui.runtime.attention.triton_decode).
"""
from __future__ import annotations

from typing import Callable

import torch

from autoui.runtime.cache import quant
from autoui.runtime.cache.base import KVCache
from autoui.runtime.cache.config import CacheConfig


def _shape(c: CacheConfig, last: int | None = None) -> tuple[int, ...]:
    base = (c.n_layers, c.max_batch, c.max_seq_len, c.n_kv_heads)
    return base if last is None else base + (last,)


class _ScaledKVCache(KVCache):
    """One low-precision value per element + one scale per (token, head):
    data [L, S, T, Hkv, D] + scale [L, S, T, Hkv]. Subclasses name the storage and codec."""

    storage_dtype: torch.dtype
    quantize: Callable[[torch.Tensor, torch.dtype], tuple[torch.Tensor, torch.Tensor]]
    dequantize: Callable[[torch.Tensor, torch.Tensor, torch.dtype], torch.Tensor]

    def __init__(self, config: CacheConfig):
        c = config
        self.k = torch.zeros(_shape(c, c.head_dim), dtype=self.storage_dtype, device=c.device)
        self.v = torch.zeros_like(self.k)
        self.k_scale = torch.zeros(_shape(c), dtype=c.scale_dtype, device=c.device)
        self.v_scale = torch.zeros_like(self.k_scale)
        super().__init__(config)

    def _write(self, layer, slot_idx, pos_idx, k, v):
        for data, scale, x in ((self.k, self.k_scale, k), (self.v, self.v_scale, v)):
            q, s = type(self).quantize(x, self.config.scale_dtype)
            data[layer, slot_idx, pos_idx] = q
            scale[layer, slot_idx, pos_idx] = s

    def _gather(self, layer, sel, length, dtype):
        rows, dequantize = self._rows, type(self).dequantize
        return tuple(dequantize(rows(data, layer, sel, length), rows(scale, layer, sel, length), dtype)
                     for data, scale in ((self.k, self.k_scale), (self.v, self.v_scale)))

    def _buffers(self):
        return [self.k, self.v, self.k_scale, self.v_scale]


class Int8KVCache(_ScaledKVCache):
    """Symmetric int8 per (token, head)."""

    kind = "int8"
    storage_dtype = torch.int8
    quantize = staticmethod(quant.quantize_int8)
    dequantize = staticmethod(quant.dequantize_int8)


class FP8KVCache(_ScaledKVCache):
    """float8 e4m3 per (token, head) with a scale."""

    kind = "fp8"
    storage_dtype = torch.float8_e4m3fn
    quantize = staticmethod(quant.quantize_fp8)
    dequantize = staticmethod(quant.dequantize_fp8)


class Int4KVCache(KVCache):
    """Grouped asymmetric int4 along head_dim, two values per byte.

    data [L, S, T, Hkv, D/2] uint8; scale and offset [L, S, T, Hkv, D/group] with keys in
    groups of `group_size` (32) and values of `value_group_size` (64): 0.297x of bf16 at
    head_dim 64. Asymmetric beat symmetric on measured reconstruction error (docs/runtime.md).
    """

    kind = "int4"

    def __init__(self, config: CacheConfig):
        c = config
        self.groups = (c.group_size, c.value_group_size)  # keys, values
        self.k = torch.zeros(_shape(c, c.head_dim // 2), dtype=torch.uint8, device=c.device)
        self.v = torch.zeros_like(self.k)
        self.k_scale = torch.zeros(_shape(c, c.head_dim // c.group_size), dtype=c.scale_dtype, device=c.device)
        self.v_scale = torch.zeros(_shape(c, c.head_dim // c.value_group_size), dtype=c.scale_dtype, device=c.device)
        self.k_offset = torch.zeros_like(self.k_scale)
        self.v_offset = torch.zeros_like(self.v_scale)
        super().__init__(config)

    def _parts(self):
        return ((self.k, self.k_scale, self.k_offset), (self.v, self.v_scale, self.v_offset))

    def _write(self, layer, slot_idx, pos_idx, k, v):
        for (data, scale, offset), x, gs in zip(self._parts(), (k, v), self.groups):
            q, s, o = quant.quantize_int4(x, gs, self.config.scale_dtype)
            data[layer, slot_idx, pos_idx] = q
            scale[layer, slot_idx, pos_idx] = s
            offset[layer, slot_idx, pos_idx] = o

    def _gather(self, layer, sel, length, dtype):
        return tuple(quant.dequantize_int4(*(self._rows(t, layer, sel, length) for t in part), gs, dtype)
                     for part, gs in zip(self._parts(), self.groups))

    def _buffers(self):
        return [t for part in self._parts() for t in part]
