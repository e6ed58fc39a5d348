"""flash-attn's `flash_attn_with_kvcache` on the plain cache (optional, CUDA only).

flash-attn ships as a CUDA source build, so it is an optional extra (`autoui[flash]`);
the import is guarded and everything falls back to SDPA without it. The kernel reads the
cache buffers in place ([slot, token, kv_head, dim] is its layout) through
`cache_batch_idx`, so no gather is needed. Its causal mask is bottom-right aligned, which
is right only when every sequence brings the same number of new tokens (decode, or an
equal-length prefill); other steps use the dense path.
"""
from __future__ import annotations

import torch


def flash_available() -> bool:
    """True when flash-attn imports and a CUDA device exists."""
    if not torch.cuda.is_available():
        return False
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


class FlashKVCacheAttention:
    """Fused write-free attention straight from the plain cache's buffers."""

    name = "flash-attn"

    def supports(self, cache, view, T: int) -> bool:
        c = cache.config
        return (cache.kind == "plain" and c.device.type == "cuda" and c.dtype in (torch.float16, torch.bfloat16)
                and view.uniform and T == view.T and c.head_dim <= 256)

    def __call__(self, cache, layer: int, q: torch.Tensor, view) -> torch.Tensor:
        from flash_attn import flash_attn_with_kvcache

        out = flash_attn_with_kvcache(
            q.transpose(1, 2),  # [B, T, Hq, D]
            cache.k[layer], cache.v[layer],  # [S, max_seq_len, Hkv, D], already holding this step's tokens
            cache_seqlens=view.k_len.to(torch.int32),
            cache_batch_idx=view.slot_index.to(torch.int32),
            causal=True,
        )
        return out.transpose(1, 2)  # [B, Hq, T, D]
