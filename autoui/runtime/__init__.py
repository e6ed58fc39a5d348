"""The inference runtime: KV caches, attention backends and constrained action decoding.

- `make_cache(CacheConfig(kind="plain" | "int8" | "int4" | "fp8", ...))`: a slot-based KV
  cache in preallocated buffers; `cache.view(slots, new_lens)` is the `AttentionCache` a
  model forward receives (see `autoui.runtime.protocol`).
- `select_backend`: reference / SDPA / flash-attn / Triton attention, picked per cache.
- `ActionConstraint`: masks logits so that every decoded text is a valid action.
"""
from __future__ import annotations

from autoui.runtime.attention import AttentionBackend, select_backend
from autoui.runtime.cache import (
    CACHE_KINDS,
    CacheConfig,
    CacheConfigError,
    CacheError,
    CacheFullError,
    CacheView,
    KVCache,
    make_cache,
)
from autoui.runtime.constrained import ActionConstraint, ConstraintError, ConstraintState, token_pieces
from autoui.runtime.protocol import AttentionCache

__all__ = [
    "ActionConstraint", "AttentionBackend", "AttentionCache", "CACHE_KINDS", "CacheConfig", "CacheConfigError",
    "CacheError", "CacheFullError", "CacheView", "ConstraintError", "ConstraintState", "KVCache", "make_cache",
    "select_backend", "token_pieces",
]
