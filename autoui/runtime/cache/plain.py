"""The unquantized KV cache: keys and values stored as the model's dtype."""
from __future__ import annotations

import torch

from autoui.runtime.cache.base import KVCache
from autoui.runtime.cache.config import CacheConfig


class PlainKVCache(KVCache):
    """K and V buffers [n_layers, max_batch, max_seq_len, n_kv_heads, head_dim] in `config.dtype`."""

    kind = "plain"

    def __init__(self, config: CacheConfig):
        c = config
        shape = (c.n_layers, c.max_batch, c.max_seq_len, c.n_kv_heads, c.head_dim)
        self.k = torch.zeros(shape, dtype=c.dtype, device=c.device)
        self.v = torch.zeros(shape, dtype=c.dtype, device=c.device)
        super().__init__(config)

    def _write(self, layer, slot_idx, pos_idx, k, v):
        self.k[layer, slot_idx, pos_idx] = k.to(self.k.dtype)  # [N, Hkv, D] at N (slot, position) pairs
        self.v[layer, slot_idx, pos_idx] = v.to(self.v.dtype)

    def _gather(self, layer, sel, length, dtype):
        k = self._rows(self.k, layer, sel, length)  # [B, L, Hkv, D]; a view when `sel` is a slice
        v = self._rows(self.v, layer, sel, length)
        return k.to(dtype), v.to(dtype)

    def _buffers(self):
        return [self.k, self.v]
