"""Configuration and errors of the KV caches.

One validated dataclass picks the cache kind (plain or quantized), its shape (layers,
KV heads, head size), its capacity (slots x tokens), device and attention backend.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

CACHE_KINDS = ("plain", "int8", "int4", "fp8")
ATTENTION_CHOICES = ("auto", "reference", "sdpa", "flash", "triton")
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


class CacheConfigError(ValueError):
    """A cache configuration that cannot work (the message names the field and value)."""


class CacheError(RuntimeError):
    """A cache used out of order: unknown or busy slots, layers called out of sequence, wrong shapes."""


class CacheFullError(CacheError):
    """No free slot, or a sequence would grow past `max_seq_len`."""


def resolve_dtype(value: str | torch.dtype, name: str) -> torch.dtype:
    """Accept a torch float dtype or its name ("bfloat16", "fp16", ...)."""
    if isinstance(value, torch.dtype):
        if value not in _DTYPES.values():
            raise CacheConfigError(f"{name} must be float32, bfloat16 or float16, got {value}")
        return value
    if isinstance(value, str) and value.lower() in _DTYPES:
        return _DTYPES[value.lower()]
    raise CacheConfigError(f"{name} must be one of {sorted(_DTYPES)}, got {value!r}")


@dataclass
class CacheConfig:
    """What a KV cache stores and where.

    kind: "plain" (dtype as is), "int8" (per token and head, symmetric), "int4" (groups of
    `group_size` (keys) / `value_group_size` (values) along head_dim with scale and minimum,
    two values per byte) or "fp8"
    (e4m3 with a per token-and-head scale). `dtype` is the model's dtype: the storage type
    of a plain cache, the type quantized values are restored to otherwise. `max_batch`
    slots each hold one sequence of up to `max_seq_len` tokens. `attention` forces a
    backend ("auto" picks the fastest one available, see autoui.runtime.attention).
    """

    kind: str = "plain"
    dtype: str | torch.dtype = torch.float32
    n_layers: int = 1
    n_kv_heads: int = 1
    head_dim: int = 64
    max_batch: int = 1
    max_seq_len: int = 2048
    device: str | torch.device = "cpu"
    group_size: int | None = None  # int4 keys: elements per scale/offset; None = min(32, head_dim)
    value_group_size: int | None = None  # int4 values; None = min(64, head_dim)
    scale_dtype: str | torch.dtype = torch.float16
    attention: str = "auto"

    def __post_init__(self) -> None:
        if self.kind not in CACHE_KINDS:
            raise CacheConfigError(f"kind must be one of {CACHE_KINDS}, got {self.kind!r}")
        if self.attention not in ATTENTION_CHOICES:
            raise CacheConfigError(f"attention must be one of {ATTENTION_CHOICES}, got {self.attention!r}")
        if isinstance(self.head_dim, int):
            # keys carry per-channel outliers: finer groups for them (KIVI's observation), coarser for values
            self.group_size = min(32, self.head_dim) if self.group_size is None else self.group_size
            self.value_group_size = min(64, self.head_dim) if self.value_group_size is None else self.value_group_size
        for name in ("n_layers", "n_kv_heads", "head_dim", "max_batch", "max_seq_len", "group_size",
                     "value_group_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise CacheConfigError(f"{name} must be a positive int, got {value!r}")
        self.dtype = resolve_dtype(self.dtype, "dtype")
        self.scale_dtype = resolve_dtype(self.scale_dtype, "scale_dtype")
        if self.scale_dtype == torch.bfloat16:
            raise CacheConfigError("scale_dtype must be float16 or float32 (bfloat16 scales lose too much precision)")
        try:
            self.device = torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise CacheConfigError(f"device {self.device!r} is not a torch device ({exc})") from None
        if self.kind == "int4" and (self.head_dim % 2 or self.head_dim % self.group_size
                                    or self.head_dim % self.value_group_size):
            # two values per byte, and whole groups per vector (a group may span both packed halves)
            raise CacheConfigError(
                f"int4 needs an even head_dim divisible by both group sizes, got head_dim={self.head_dim}, "
                f"group_size={self.group_size}, value_group_size={self.value_group_size}")
        if self.kind == "fp8" and not hasattr(torch, "float8_e4m3fn"):
            raise CacheConfigError(f"kind='fp8' needs torch.float8_e4m3fn (torch {torch.__version__} lacks it)")

    @classmethod
    def for_decoder(cls, decoder_config, **overrides) -> "CacheConfig":
        """Shape fields from an `autoui.model.config.DecoderConfig` (num_layers, num_kv_heads, head dim)."""
        fields = {"n_layers": decoder_config.num_layers, "n_kv_heads": decoder_config.num_kv_heads,
                  "head_dim": decoder_config.resolved_head_dim}
        fields.update(overrides)
        return cls(**fields)
