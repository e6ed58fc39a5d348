"""The reference attention: explicit matmuls and a masked softmax in float32.

Slow but obviously right; every faster path is tested against it. Handles grouped KV
heads, per-sequence lengths (via the view's mask) and causal new tokens.
"""
from __future__ import annotations

import math

import torch


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask_kind: str,
                        mask: torch.Tensor | None) -> torch.Tensor:
    """q [B, Hq, T, D]; k, v [B, L, Hkv, D] (cache layout) -> [B, Hq, T, D] in q's dtype.

    mask_kind "none": all L keys visible; "causal": query t sees keys 0..t; "explicit":
    `mask` [B, 1, T, L], True = visible.
    """
    B, Hq, T, D = q.shape
    L, Hkv = k.shape[1], k.shape[2]
    qf = q.float().reshape(B, Hkv, Hq // Hkv, T, D)  # [B, Hkv, G, T, D]: query heads grouped by their kv head
    kf = k.float().permute(0, 2, 1, 3)[:, :, None]  # [B, Hkv, 1, L, D]
    vf = v.float().permute(0, 2, 1, 3)[:, :, None]  # [B, Hkv, 1, L, D]
    scores = (qf @ kf.transpose(-1, -2)) / math.sqrt(D)  # [B, Hkv, G, T, L]
    if mask_kind == "causal":
        visible = torch.ones(T, L, dtype=torch.bool, device=q.device).tril(L - T)  # [T, L]
        scores = scores.masked_fill(~visible, float("-inf"))
    elif mask_kind == "explicit":
        scores = scores.masked_fill(~mask[:, :, None], float("-inf"))  # mask [B, 1, 1, T, L]
    elif mask_kind != "none":
        raise ValueError(f"unknown mask kind {mask_kind!r}")
    probs = torch.softmax(scores, dim=-1)
    out = probs @ vf  # [B, Hkv, G, T, D]
    return out.reshape(B, Hq, T, D).to(q.dtype)
