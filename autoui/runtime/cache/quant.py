"""Quantize / dequantize key and value vectors for the quantized KV caches.

All functions work on the last dimension (head_dim) of any [..., D] tensor, so the same
code serves writes ([N, Hkv, D]) and reads ([B, L, Hkv, D]). Scales are rounded to their
storage dtype *before* the values are quantized, so dequantization uses exactly the
scale the values were computed with.

int4 packing: byte j of a vector holds element j in its low nibble and element j + D/2
in its high nibble ("split halves"), so a kernel can work on the two halves without
interleaving. Groups are counted over the unpacked elements, so a group may cover parts of
both halves (e.g. one group of 64 for head_dim 64).
"""
from __future__ import annotations

import torch

INT8_MAX = 127
FP8_MAX = 448.0  # largest finite float8_e4m3fn


def _store_scale(scale: torch.Tensor, scale_dtype: torch.dtype) -> torch.Tensor:
    # keep scales away from 0 (all-zero vectors) and inside the storage type's normal range
    return scale.clamp_min(torch.finfo(scale_dtype).tiny).to(scale_dtype)


def quantize_int8(x: torch.Tensor, scale_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per vector: x [..., D] -> (q int8 [..., D], scale [...])."""
    xf = x.float()
    scale = _store_scale(xf.abs().amax(-1) / INT8_MAX, scale_dtype)  # [...]
    q = torch.round(xf / scale.float().unsqueeze(-1)).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Inverse of `quantize_int8`: [..., D] in `dtype` (int8 values are exact in every float type)."""
    return q.to(dtype) * scale.to(dtype).unsqueeze(-1)


def quantize_fp8(x: torch.Tensor, scale_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """float8 e4m3 per vector with a scale mapping the vector's max to 448: ([..., D], [...])."""
    xf = x.float()
    scale = _store_scale(xf.abs().amax(-1) / FP8_MAX, scale_dtype)
    q = (xf / scale.float().unsqueeze(-1)).clamp_(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q, scale


def dequantize_fp8(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Inverse of `quantize_fp8`."""
    return q.to(dtype) * scale.to(dtype).unsqueeze(-1)


def _groups(x: torch.Tensor, group_size: int) -> torch.Tensor:
    d = x.shape[-1]
    if d % 2 or d % group_size:
        raise ValueError(f"int4 needs an even last dim ({d}) divisible by group_size ({group_size})")
    return x.float().reshape(*x.shape[:-1], d // group_size, group_size)  # [..., G, gs]


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """codes uint8 in 0..15 [..., D] -> packed uint8 [..., D/2] (low nibble: first half)."""
    half = codes.shape[-1] // 2
    return codes[..., :half] | (codes[..., half:] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """packed uint8 [..., D/2] -> codes uint8 [..., D]."""
    return torch.cat((packed & 0xF, packed >> 4), dim=-1)


def quantize_int4(x: torch.Tensor, group_size: int, scale_dtype: torch.dtype,
                  symmetric: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grouped int4: x [..., D] -> (packed uint8 [..., D/2], scale [..., D/gs], offset [..., D/gs]).

    Asymmetric (default): x ~ code * scale + offset with code 0..15 and offset the group
    minimum. Symmetric: x ~ (code - 8) * scale with code 1..15, offset = -8 * scale, so both
    modes dequantize with the same formula.
    """
    g = _groups(x, group_size)  # [..., G, gs]
    if symmetric:
        scale = _store_scale(g.abs().amax(-1) / 7, scale_dtype)  # [..., G]
        codes = torch.round(g / scale.float().unsqueeze(-1)).clamp_(-7, 7) + 8
        offset = (-8 * scale.float()).to(scale_dtype)
    else:
        lo, hi = g.amin(-1), g.amax(-1)
        scale = _store_scale((hi - lo) / 15, scale_dtype)
        offset = lo.to(scale_dtype)
        codes = torch.round((g - offset.float().unsqueeze(-1)) / scale.float().unsqueeze(-1)).clamp_(0, 15)
    codes = codes.to(torch.uint8).reshape(x.shape)
    return pack_int4(codes), scale, offset


def dequantize_int4(packed: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, group_size: int,
                    dtype: torch.dtype) -> torch.Tensor:
    """Inverse of `quantize_int4`: [..., D] in `dtype`."""
    codes = unpack_int4(packed)  # [..., D]
    shape = codes.shape
    g = codes.reshape(*shape[:-1], shape[-1] // group_size, group_size).to(dtype)  # [..., G, gs]
    out = g * scale.to(dtype).unsqueeze(-1) + offset.to(dtype).unsqueeze(-1)
    return out.reshape(shape)
