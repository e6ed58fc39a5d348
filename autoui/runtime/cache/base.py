"""The slot-based KV cache: bookkeeping shared by every storage kind.

A cache owns preallocated buffers for `max_batch` slots x `max_seq_len` tokens in every
layer, laid out [slot, token, kv_head, head_dim] (the layout flash-attn's kvcache kernel
reads directly). A sequence occupies one slot from `allocate` until `free`; the cache
tracks each slot's length on the host. A forward pass goes through a `CacheView`
(`cache.view(slots, new_lens)`), which implements the model's `AttentionCache` protocol.

Subclasses define how keys/values are stored: `_write` (store new vectors at given
slot/position pairs), `_gather` (the first `length` tokens of some slots, restored to
the model's dtype) and `_buffers` (every tensor they allocated, for memory accounting).
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch

from autoui.runtime.cache.config import CacheConfig, CacheError, CacheFullError

log = logging.getLogger("autoui.runtime")


class KVCache:
    """Base class: slot allocation, lengths and views. Use `make_cache(config)` to build one."""

    kind = "base"

    def __init__(self, config: CacheConfig):
        from autoui.runtime.attention import select_backend

        self.config = config
        self.lengths = torch.zeros(config.max_batch, dtype=torch.long)  # host copy, one per slot
        self._in_use = [False] * config.max_batch
        self.backend = select_backend(config)

    # -- storage, per kind --------------------------------------------------------------
    def _write(self, layer: int, slot_idx: torch.Tensor, pos_idx: torch.Tensor,
               k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k, v [N, Hkv, D] at (slot_idx[i], pos_idx[i]) of `layer`."""
        raise NotImplementedError

    def _gather(self, layer: int, sel: slice | torch.Tensor, length: int,
                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, length, Hkv, D] in `dtype` of the selected slots."""
        raise NotImplementedError

    def _buffers(self) -> list[torch.Tensor]:
        raise NotImplementedError

    @staticmethod
    def _rows(buf: torch.Tensor, layer: int, sel: slice | torch.Tensor, length: int) -> torch.Tensor:
        """buf[layer, sel, :length]: a view for a slice of slots, else index_select (faster than fancy indexing)."""
        prefix = buf[layer, :, :length]  # [S, length, ...] view
        return prefix[sel] if isinstance(sel, slice) else prefix.index_select(0, sel)

    # -- accounting ---------------------------------------------------------------------
    def bytes_per_token(self) -> float:
        """Bytes one token takes in all layers, K and V, scales included (from the real buffers)."""
        total = sum(t.numel() * t.element_size() for t in self._buffers())
        return total / (self.config.max_batch * self.config.max_seq_len)

    def nbytes(self) -> int:
        """Total bytes of every buffer of this cache."""
        return sum(t.numel() * t.element_size() for t in self._buffers())

    # -- slots --------------------------------------------------------------------------
    def allocate(self, n: int = 1) -> list[int]:
        """Reserve `n` free slots (lowest first, so batches tend to be contiguous) with length 0."""
        free = [i for i, used in enumerate(self._in_use) if not used]
        if n < 1 or n > len(free):
            raise CacheFullError(f"asked for {n} slots, {len(free)} of {self.config.max_batch} are free")
        slots = free[:n]
        for s in slots:
            self._in_use[s] = True
            self.lengths[s] = 0
        return slots

    def free(self, slots: Sequence[int]) -> None:
        """Release slots (their contents become garbage and are overwritten by the next user)."""
        for s in self._check_slots(slots):
            self._in_use[s] = False
            self.lengths[s] = 0

    @property
    def free_slots(self) -> int:
        """How many slots `allocate` can still hand out."""
        return self._in_use.count(False)

    def length(self, slot: int) -> int:
        """Tokens currently cached for `slot`."""
        return int(self.lengths[self._check_slots([slot])[0]])

    def _check_slots(self, slots: Sequence[int]) -> list[int]:
        out = [int(s) for s in slots]
        bad = [s for s in out if not (0 <= s < self.config.max_batch) or not self._in_use[s]]
        if bad:
            raise CacheError(f"slots {bad} are not allocated (max_batch={self.config.max_batch})")
        if len(set(out)) != len(out):
            raise CacheError(f"slots {out} repeat a slot; each sequence needs its own")
        return out

    def view(self, slots: Sequence[int], new_lens: Sequence[int] | None = None, n_new: int | None = None):
        """A `CacheView` for one forward pass of the sequences in `slots`.

        `new_lens[b]` is how many real new tokens sequence b brings (right-padded to the
        forward's T); None means `n_new` (default 1) for every sequence.
        """
        from autoui.runtime.cache.view import CacheView

        slots = self._check_slots(slots)
        if new_lens is None:
            new_lens = [1 if n_new is None else int(n_new)] * len(slots)
        return CacheView(self, slots, [int(n) for n in new_lens])

    def reset(self) -> None:
        """Free every slot."""
        self._in_use = [False] * self.config.max_batch
        self.lengths.zero_()

    def __repr__(self) -> str:
        c = self.config
        return (f"{type(self).__name__}(layers={c.n_layers}, kv_heads={c.n_kv_heads}, head_dim={c.head_dim}, "
                f"slots={c.max_batch}, max_seq_len={c.max_seq_len}, {self.bytes_per_token():.0f} B/token, "
                f"attention={self.backend.describe()})")
