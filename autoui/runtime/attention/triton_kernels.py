"""The Triton kernels behind `triton_decode` (imported only when they are first needed).

Importing this module imports triton; `autoui.runtime.attention.triton_decode` guards it.
TRITON_INTERPRET=1 must be set before the first import to run the kernels on CPU.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def load_half_pair(data, scale, offset, row, srow, mask_n, offs_h,
                   HALF: tl.constexpr, GS: tl.constexpr, MODE: tl.constexpr):
    """Dequantized [BLOCK_N, HALF] first and second halves of a K or V tile (fp32).

    MODE 0: plain (the values as stored), 1: int8 with a scale per row, 2: packed int4 in groups."""
    m2 = mask_n[:, None]
    if MODE == 0:
        lo = tl.load(data + row[:, None] + offs_h[None, :], mask=m2, other=0).to(tl.float32)
        hi = tl.load(data + row[:, None] + HALF + offs_h[None, :], mask=m2, other=0).to(tl.float32)
    elif MODE == 2:
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
def decode_kernel(Q, K, V, KS, VS, KO, VO, Slots, Lens, MidO, MidM, MidL, sm_scale,
                  s_qb, s_qh, s_ds, s_dt, s_dh, s_ss, s_st, s_sh, s_vs, s_vt, s_vh, s_mb, s_mh, s_ms,
                  G: tl.constexpr, HALF: tl.constexpr, GS: tl.constexpr, GS_V: tl.constexpr, MODE: tl.constexpr,
                  BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr):
    """Partial decode attention of one (sequence, kv head, split): writes MidO/MidM/MidL."""
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
        srow = slot * s_ss + offs_n.to(tl.int64) * s_st + kvh * s_sh  # key scales/offsets
        vrow = slot * s_vs + offs_n.to(tl.int64) * s_vt + kvh * s_vh  # value scales/offsets
        k_lo, k_hi = load_half_pair(K, KS, KO, row, srow, mask_n, offs_h, HALF, GS, MODE)
        qk = tl.dot(q_lo, tl.trans(k_lo), input_precision="ieee")
        qk += tl.dot(q_hi, tl.trans(k_hi), input_precision="ieee")  # [BLOCK_G, BLOCK_N]
        qk = tl.where(mask_n[None, :], qk * sm_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(qk - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v_lo, v_hi = load_half_pair(V, VS, VO, row, vrow, mask_n, offs_h, HALF, GS_V, MODE)
        acc_lo = acc_lo * alpha[:, None] + tl.dot(p, v_lo, input_precision="ieee")
        acc_hi = acc_hi * alpha[:, None] + tl.dot(p, v_hi, input_precision="ieee")
        m_i = m_new

    mid = b * s_mb + heads * s_mh + split * s_ms  # [BLOCK_G]
    tl.store(MidM + mid, m_i, mask=g_mask)
    tl.store(MidL + mid, l_i, mask=g_mask)
    o_row = MidO + mid[:, None] * HALF * 2 + offs_h[None, :]
    tl.store(o_row, acc_lo, mask=g_mask[:, None])
    tl.store(o_row + HALF, acc_hi, mask=g_mask[:, None])
