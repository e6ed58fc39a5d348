"""A fused decode-attention kernel in Triton for the plain, int8 and int4 caches.

One new token per sequence (decode). It reads the cache buffers in place through each
sequence's slot index and up to its own length, so it needs no gather and no mask: the
attention of a static-shape decode step (a CUDA graph) costs the sequences' true lengths.
Grid: (sequence, kv head, split). Each program
takes the query heads that share one kv head (GQA), walks its split of the sequence in
tiles of BLOCK_N tokens, loads the quantized K/V tile, dequantizes it in registers and
keeps an online softmax (running max m, sum l, unnormalized output). The splits'
partial results are merged afterwards (split-K), so long sequences use many programs.
The whole pool is never dequantized: only the tiles a program reads.

Head vectors are handled as two halves because int4 packs element j and j + D/2 into
one byte; int8 uses the same halves so both share one kernel.

Runs on CUDA; on CPU only under Triton's interpreter (TRITON_INTERPRET=1), which is how
the tests check it against the reference. `triton` is not a dependency: the kernels live
in `triton_kernels`, imported on first use only.
"""
from __future__ import annotations

import importlib.util
import math
import os

import torch


def triton_available(device: torch.device) -> bool:
    """True when the kernel can run on `device` (CUDA, or CPU under TRITON_INTERPRET=1)."""
    if importlib.util.find_spec("triton") is None:
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"


def _merge_splits(mid_o: torch.Tensor, mid_m: torch.Tensor, mid_l: torch.Tensor) -> torch.Tensor:
    """Combine per-split (unnormalized output, max, sum) into the softmax output [B, Hq, D]."""
    m = mid_m.amax(-1, keepdim=True)  # [B, Hq, 1]; finite: split 0 always holds >= 1 token
    w = torch.exp(mid_m - m)  # [B, Hq, S]; empty splits have m = -inf -> weight 0
    return (w[..., None] * mid_o).sum(-2) / (w * mid_l).sum(-1)[..., None]


def triton_decode_attention(q: torch.Tensor, parts: tuple, slots: torch.Tensor, lens: torch.Tensor,
                            group_size: int, int4: bool, max_len: int, block_n: int = 32,
                            splits: int | None = None, value_group_size: int | None = None) -> torch.Tensor:
    """q [B, Hq, D] over one layer's quantized buffers -> [B, Hq, D] in q's dtype.

    parts: (k, v, k_scale, v_scale, k_offset, v_offset) of one layer, laid out
    [slot, token, kv_head, ...]; offsets are None for int8, scales and offsets None for a
    plain cache (values as stored, any float dtype). `lens` [B] counts the keys of
    each sequence (the new token included), `slots` [B] where each sequence lives. int4 keys
    come in groups of `group_size`, values of `value_group_size` (default: the same).
    """
    k, v, ks, vs, ko, vo = parts
    B, Hq, D = q.shape
    Hkv = k.shape[2]
    G = Hq // Hkv
    if splits is None:  # enough programs to fill a GPU for long prefixes, one split for short ones
        splits = max(1, min(32, math.ceil(max_len / 256)))
    chunk = math.ceil(math.ceil(max_len / splits) / block_n) * block_n
    mid_o = torch.empty(B, Hq, splits, D, dtype=torch.float32, device=q.device)
    mid_m = torch.empty(B, Hq, splits, dtype=torch.float32, device=q.device)
    mid_l = torch.empty_like(mid_m)
    q = q.contiguous()
    mode = 0 if ks is None else 2 if int4 else 1
    if ks is None:  # plain: no scales; the kernel never reads them, but needs pointers and strides
        ks = vs = k[:, :, :, 0]
    ko = ks if ko is None else ko  # unused by the int8 path
    vo = vs if vo is None else vo
    import triton

    from autoui.runtime.attention.triton_kernels import decode_kernel

    decode_kernel[(B, Hkv, splits)](
        q, k, v, ks, vs, ko, vo, slots.to(torch.int32), lens.to(torch.int32), mid_o, mid_m, mid_l,
        1.0 / math.sqrt(D),
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2), ks.stride(0), ks.stride(1), ks.stride(2),
        vs.stride(0), vs.stride(1), vs.stride(2), mid_m.stride(0), mid_m.stride(1), mid_m.stride(2),
        G=G, HALF=D // 2, GS=group_size, GS_V=value_group_size or group_size, MODE=mode, BLOCK_G=max(16, triton.next_power_of_2(G)),
        BLOCK_N=block_n, CHUNK=chunk,
    )
    return _merge_splits(mid_o, mid_m, mid_l).to(q.dtype)


TRITON_KINDS = ("plain", "int8", "int4")


def cache_parts(cache, layer: int) -> tuple:
    """`triton_decode_attention`'s `parts` of one layer of a plain, int8 or int4 cache."""
    plain, int4 = cache.kind == "plain", cache.kind == "int4"
    return (cache.k[layer], cache.v[layer], None if plain else cache.k_scale[layer],
            None if plain else cache.v_scale[layer],
            cache.k_offset[layer] if int4 else None, cache.v_offset[layer] if int4 else None)


class TritonDecodeAttention:
    """The kernel as a fused backend of the int8/int4 caches (decode steps), and of the plain
    cache in static decode steps (`autoui.runtime.graphs`; elsewhere SDPA reads the plain cache
    as a view), or always when `attention="triton"` is asked for."""

    name = "triton-decode"

    def __init__(self, forced: bool = False):
        self.forced = forced

    def supports(self, cache, view, T: int) -> bool:
        d = cache.config.head_dim
        plain_ok = self.forced or getattr(view, "static", False)
        return (cache.kind in TRITON_KINDS and (cache.kind != "plain" or plain_ok) and T == 1 and d >= 32
                and d & (d - 1) == 0 and triton_available(cache.config.device))

    def __call__(self, cache, layer: int, q: torch.Tensor, view) -> torch.Tensor:
        out = triton_decode_attention(q[:, :, 0], cache_parts(cache, layer), view.slot_index, view.k_len,
                                      cache.config.group_size, cache.kind == "int4", view.max_len, value_group_size=cache.config.value_group_size)
        return out[:, :, None]  # [B, Hq, 1, D]
