"""KV caches: preallocated, slot-based, plain or quantized; `make_cache(config)` builds one."""
from __future__ import annotations

from autoui.runtime.cache.base import KVCache
from autoui.runtime.cache.config import (
    CACHE_KINDS,
    CacheConfig,
    CacheConfigError,
    CacheError,
    CacheFullError,
)
from autoui.runtime.cache.plain import PlainKVCache
from autoui.runtime.cache.quantized import FP8KVCache, Int4KVCache, Int8KVCache
from autoui.runtime.cache.view import CacheView

_KINDS = {"plain": PlainKVCache, "int8": Int8KVCache, "int4": Int4KVCache, "fp8": FP8KVCache}


def make_cache(config: CacheConfig) -> KVCache:
    """Build the cache `config.kind` names, with buffers allocated on `config.device`."""
    if not isinstance(config, CacheConfig):
        raise CacheConfigError(f"make_cache takes a CacheConfig, got {type(config).__name__}")
    return _KINDS[config.kind](config)


__all__ = [
    "CACHE_KINDS", "CacheConfig", "CacheConfigError", "CacheError", "CacheFullError", "CacheView", "FP8KVCache",
    "Int4KVCache", "Int8KVCache", "KVCache", "PlainKVCache", "make_cache",
]
