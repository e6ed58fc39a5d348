"""The one seam between the model and the inference runtime.

The decoder never stores keys/values itself. During training (and in the simple
reference generation) it runs plain causal attention over the whole sequence. When
serving, the runtime passes an object implementing `AttentionCache`: each attention
layer hands it the freshly projected (RoPE-applied) q/k/v of the new tokens, and the
cache stores k/v in its own buffers (plain or quantized) and runs attention with the
backend it chose. This keeps one model code path for training and serving while the
runtime owns KV memory and attention kernels.

The runtime's implementation is `autoui.runtime.cache.CacheView`: one per forward pass,
made by `cache.view(slots, new_lens)`; its `position_ids(T)` are the positions the model
must use for RoPE, and after the last layer's `attend` the sequences' lengths advance.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class AttentionCache(Protocol):
    """KV storage + attention for a batch of sequences, owned by the runtime."""

    def attend(self, layer_idx: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Store the new keys/values of `layer_idx` and attend over everything cached.

        q: [B, Hq, T, D]; k, v: [B, Hkv, T, D] for the T new tokens of each sequence
        (RoPE already applied; Hq is a multiple of Hkv). Returns [B, Hq, T, D]: each new
        token attends to all previously cached tokens of its own sequence and causally
        to the new tokens up to itself. Padding and per-sequence lengths are the
        cache's business (it knows where each sequence's tokens go).
        """
        ...
