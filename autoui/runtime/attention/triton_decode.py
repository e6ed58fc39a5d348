"""A fused decode-attention kernel in Triton for the int8 and int4 caches.

One new token per sequence (decode). Grid: (sequence, kv head, split). Each program
takes the query heads that share one kv head (GQA), walks its split of the sequence in
tiles of BLOCK_N tokens, loads the quantized K/V tile, dequantizes it in registers and
keeps an online softmax (running max m, sum l, unnormalized output). The splits'
partial results are merged afterwards (split-K), so long sequences use many programs.
The whole pool is never dequantized: only the tiles a program reads.

Head vectors are handled as two halves because int4 packs element j and j + D/2 into
one byte; int8 uses the same halves so both share one kernel.

Runs on CUDA; on CPU only under Triton's interpreter (TRITON_INTERPRET=1), which is how
the tests check it against the reference. `triton` is not a dependency: import guarded.
"""
from __future__ import annotations

import math
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised on machines without triton
    triton = None


def triton_available(device: torch.device) -> bool:
    """True when the kernel can run on `device` (CUDA, or CPU under TRITON_INTERPRET=1)."""
    if triton is None:
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"


if triton is not None:

    @triton.jit
    def _load_half_pair(data, scale, offset, row, srow, mask_n, offs_h,
                        HALF: tl.constexpr, GS: tl.constexpr, INT4: tl.constexpr):
        """Dequantized [BLOCK_N, HALF] first and second halves of a K or V tile (fp32)."""
        m2 = mask_n[:, None]
        if INT4:
            packed = tl.load(data + row[:, None] + offs_h[None, :], mask=m2, other=0)
            g_lo = offs_h // GS
            g_hi = (offs_h + HALF) // GS
            s_lo = tl.load(scale + srow[:, None] + g_lo[None, :], mask=m2, other=0).to(tl.float32)
            s_hi = tl.load(scale + srow[:, None] + g_hi[None, :], mask=m2, other=0).to(tl.float32)
            o_lo = tl.load(offset + srow[:, None] + g_lo[None, :], mask=m2, other=0).to(tl.float32)
            o_hi = tl.load(offset + srow[:, None] + g_hi[None, :], mask=m2, other=0).to(tl.float32)
            lo = (packed & 0xF).to(tl.float32) * s_lo + o_lo
            hi = (packed >> 4).to(tl.float32) * s_hi + o_hi
        else:
            s = tl.load(scale + srow, mask=mask_n, other=0).to(tl.float32)[:, None]
            lo = tl.load(data + row[:, None] + offs_h[None, :], mask=m2, other=0).to(tl.float32) * s
            hi = tl.load(data + row[:, None] + HALF + offs_h[None, :], mask=m2, other=0).to(tl.float32) * s
        return lo, hi

    @triton.jit
    def _decode_kernel(Q, K, V, KS, VS, KO, VO, Slots, Lens, MidO, MidM, MidL, sm_scale,
                       s_qb, s_qh, s_ds, s_dt, s_dh, s_ss, s_st, s_sh, s_mb, s_mh, s_ms,
                       G: tl.constexpr, HALF: tl.constexpr, GS: tl.constexpr, INT4: tl.constexpr,
                       BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr):
        b = tl.program_id(0)
        kvh = tl.program_id(1)
        split = tl.program_id(2)
        slot = tl.load(Slots + b).to(tl.int64)
        seq_len = tl.load(Lens + b)
        start = split * CHUNK
        end = tl.minimum(start + CHUNK, seq_len)

        offs_g = tl.arange(0, BLOCK_G)
        offs_h = tl.arange(0, HALF)
        heads = kvh * G + offs_g  # query heads sharing this kv head
        g_mask = offs_g < G
        q_row = Q + b * s_qb + heads[:, None] * s_qh + offs_h[None, :]
        q_lo = tl.load(q_row, mask=g_mask[:, None], other=0).to(tl.float32)  # [BLOCK_G, HALF]
        q_hi = tl.load(q_row + HALF, mask=g_mask[:, None], other=0).to(tl.float32)

        m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_G], tl.float32)
        acc_lo = tl.zeros([BLOCK_G, HALF], tl.float32)
        acc_hi = tl.zeros([BLOCK_G, HALF], tl.float32)
        for n0 in range(start, end, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            mask_n = offs_n < end
            row = slot * s_ds + offs_n.to(tl.int64) * s_dt + kvh * s_dh
            srow = slot * s_ss + offs_n.to(tl.int64) * s_st + kvh * s_sh
            k_lo, k_hi = _load_half_pair(K, KS, KO, row, srow, mask_n, offs_h, HALF, GS, INT4)
            qk = tl.dot(q_lo, tl.trans(k_lo), input_precision="ieee")
            qk += tl.dot(q_hi, tl.trans(k_hi), input_precision="ieee")  # [BLOCK_G, BLOCK_N]
            qk = tl.where(mask_n[None, :], qk * sm_scale, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(qk - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            v_lo, v_hi = _load_half_pair(V, VS, VO, row, srow, mask_n, offs_h, HALF, GS, INT4)
            acc_lo = acc_lo * alpha[:, None] + tl.dot(p, v_lo, input_precision="ieee")
            acc_hi = acc_hi * alpha[:, None] + tl.dot(p, v_hi, input_precision="ieee")
            m_i = m_new

        mid = b * s_mb + heads * s_mh + split * s_ms  # [BLOCK_G]
        tl.store(MidM + mid, m_i, mask=g_mask)
        tl.store(MidL + mid, l_i, mask=g_mask)
        o_row = MidO + mid[:, None] * HALF * 2 + offs_h[None, :]
        tl.store(o_row, acc_lo, mask=g_mask[:, None])
        tl.store(o_row + HALF, acc_hi, mask=g_mask[:, None])


def _merge_splits(mid_o: torch.Tensor, mid_m: torch.Tensor, mid_l: torch.Tensor) -> torch.Tensor:
    """Combine per-split (unnormalized output, max, sum) into the softmax output [B, Hq, D]."""
    m = mid_m.amax(-1, keepdim=True)  # [B, Hq, 1]; finite: split 0 always holds >= 1 token
    w = torch.exp(mid_m - m)  # [B, Hq, S]; empty splits have m = -inf -> weight 0
    return (w[..., None] * mid_o).sum(-2) / (w * mid_l).sum(-1)[..., None]


def triton_decode_attention(q: torch.Tensor, parts: tuple, slots: torch.Tensor, lens: torch.Tensor,
                            group_size: int, int4: bool, max_len: int, block_n: int = 32,
                            splits: int | None = None) -> torch.Tensor:
    """q [B, Hq, D] over one layer's quantized buffers -> [B, Hq, D] in q's dtype.

    parts: (k, v, k_scale, v_scale, k_offset, v_offset) of one layer, laid out
    [slot, token, kv_head, ...]; offsets are None for int8. `lens` [B] counts the keys of
    each sequence (the new token included), `slots` [B] where each sequence lives.
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
    ko = ks if ko is None else ko  # unused by the int8 path, but the kernel needs a pointer
    vo = vs if vo is None else vo
    _decode_kernel[(B, Hkv, splits)](
        q, k, v, ks, vs, ko, vo, slots.to(torch.int32), lens.to(torch.int32), mid_o, mid_m, mid_l,
        1.0 / math.sqrt(D),
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2), ks.stride(0), ks.stride(1), ks.stride(2),
        mid_m.stride(0), mid_m.stride(1), mid_m.stride(2),
        G=G, HALF=D // 2, GS=group_size, INT4=int4, BLOCK_G=max(16, triton.next_power_of_2(G)),
        BLOCK_N=block_n, CHUNK=chunk,
    )
    return _merge_splits(mid_o, mid_m, mid_l).to(q.dtype)


class TritonQuantDecodeAttention:
    """The kernel as a fused backend of the int8/int4 caches (decode steps only)."""

    name = "triton-quant-decode"

    def supports(self, cache, view, T: int) -> bool:
        d = cache.config.head_dim
        return (cache.kind in ("int8", "int4") and T == 1 and d >= 32 and d & (d - 1) == 0
                and triton_available(cache.config.device))

    def __call__(self, cache, layer: int, q: torch.Tensor, view) -> torch.Tensor:
        int4 = cache.kind == "int4"
        parts = (cache.k[layer], cache.v[layer], cache.k_scale[layer], cache.v_scale[layer],
                 cache.k_offset[layer] if int4 else None, cache.v_offset[layer] if int4 else None)
        out = triton_decode_attention(q[:, :, 0], parts, view.slot_index, view.k_len, cache.config.group_size,
                                      int4, view.max_len)
        return out[:, :, None]  # [B, Hq, 1, D]
