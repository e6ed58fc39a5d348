"""KV caches: slot bookkeeping, memory accounting, and attention through a cache equal to
attention over the whole sequence (for every cache kind and dense backend)."""
from __future__ import annotations

import math

import pytest
import torch

from autoui.runtime import AttentionCache, CacheConfig, CacheConfigError, CacheError, CacheFullError, make_cache
from autoui.runtime.cache import quant

L, HQ, HKV, D = 2, 4, 2, 64


def _config(kind="plain", **kw):
    base = dict(kind=kind, n_layers=L, n_kv_heads=HKV, head_dim=D, max_batch=5, max_seq_len=48)
    base.update(kw)
    return CacheConfig(**base)


def _roundtrip(kind: str, x: torch.Tensor, group_size: int = min(32, D)) -> torch.Tensor:
    """What a cache of `kind` gives back for x [..., D] (float32)."""
    if kind == "plain":
        return x
    if kind == "int8":
        return quant.dequantize_int8(*quant.quantize_int8(x, torch.float16), torch.float32)
    if kind == "fp8":
        return quant.dequantize_fp8(*quant.quantize_fp8(x, torch.float16), torch.float32)
    return quant.dequantize_int4(*quant.quantize_int4(x, group_size, torch.float16), group_size, torch.float32)


def _full_attention(q, k, v):
    """Causal attention of one sequence: q [Hq, T, D], k/v [Hkv, T, D] -> [Hq, T, D] (float64)."""
    q, k, v = q.double(), k.double(), v.double()
    k, v = k.repeat_interleave(HQ // HKV, 0), v.repeat_interleave(HQ // HKV, 0)
    s = q @ k.transpose(-1, -2) / math.sqrt(D)
    t = q.shape[1]
    s = s.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
    return s.softmax(-1) @ v


def _run_sequences(cache, slots, prompt_lens, decode_steps, dtype=torch.float32, seed=0):
    """Batched padded prefill then decode steps; returns (per-sequence outputs per layer, q, k, v)."""
    g = torch.Generator().manual_seed(seed)
    totals = [n + decode_steps for n in prompt_lens]
    Q = [torch.randn(L, HQ, t, D, generator=g) for t in totals]
    K = [torch.randn(L, HKV, t, D, generator=g) * 1.5 + 0.3 for t in totals]
    V = [torch.randn(L, HKV, t, D, generator=g) for t in totals]
    outs = [[[] for _ in slots] for _ in range(L)]

    def forward(view, segments, T):
        for layer in range(L):
            q = torch.zeros(len(slots), HQ, T, D)
            k, v = torch.zeros(len(slots), HKV, T, D), torch.zeros(len(slots), HKV, T, D)
            for b, (s, e) in enumerate(segments):  # right padding stays zero (garbage for the cache)
                q[b, :, :e - s], k[b, :, :e - s], v[b, :, :e - s] = (X[b][layer, :, s:e] for X in (Q, K, V))
            out = view.attend(layer, q.to(dtype), k.to(dtype), v.to(dtype))
            for b, (s, e) in enumerate(segments):
                outs[layer][b].append(out[b, :, :e - s].double())

    forward(cache.view(slots, prompt_lens), [(0, n) for n in prompt_lens], max(prompt_lens))
    for step in range(decode_steps):
        forward(cache.view(slots), [(n + step, n + step + 1) for n in prompt_lens], 1)
    got = [[torch.cat(outs[layer][b], 1) for b in range(len(slots))] for layer in range(L)]
    return got, Q, K, V


# tolerances against attention over the same round-tripped K/V, by storage dtype
_TOL = {torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 5e-3}


@pytest.mark.parametrize("kind", ["plain", "int8", "int4", "fp8"])
@pytest.mark.parametrize("attention", ["reference", "sdpa"])
def test_cache_attention_equals_full_attention(kind, attention):
    cache = make_cache(_config(kind, attention=attention))
    cache.allocate(2)
    slots = [4, 2, 3]  # not contiguous: the gather path
    cache.allocate(3)
    cache.free([0, 1])
    got, Q, K, V = _run_sequences(cache, slots, [5, 11, 3], decode_steps=4)
    for layer in range(L):
        for b in range(len(slots)):
            ref = _full_attention(Q[b][layer], _roundtrip(kind, K[b][layer].transpose(0, 1)).transpose(0, 1),
                                  _roundtrip(kind, V[b][layer].transpose(0, 1), min(64, D)).transpose(0, 1))
            assert torch.allclose(got[layer][b], ref, atol=2e-4), (kind, attention, layer, b)
    assert [cache.length(s) for s in slots] == [9, 15, 7]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_sdpa_matches_reference(dtype):
    outs = {}
    for attention in ("reference", "sdpa"):
        cache = make_cache(_config("plain", dtype=dtype, attention=attention))
        slots = cache.allocate(2)  # contiguous: read through a view
        outs[attention], *_ = _run_sequences(cache, slots, [6, 2], decode_steps=3, dtype=dtype)
    for layer in range(L):
        for a, b in zip(outs["reference"][layer], outs["sdpa"][layer]):
            assert torch.allclose(a, b, atol=_TOL[dtype]), (dtype, (a - b).abs().max())


def test_quantized_error_is_small_and_ordered():
    """Quantized caches stay close to the plain one; int8 is the most faithful."""
    errors = {}
    plain = make_cache(_config("plain"))
    base, *_ = _run_sequences(plain, plain.allocate(2), [12, 7], 3)
    for kind in ("int8", "fp8", "int4"):
        cache = make_cache(_config(kind))
        got, *_ = _run_sequences(cache, cache.allocate(2), [12, 7], 3)
        errors[kind] = max((g - b).abs().max().item() for gl, bl in zip(got, base) for g, b in zip(gl, bl))
    assert errors["int8"] < 0.05 and errors["fp8"] < 0.2 and errors["int4"] < 0.5
    assert errors["int8"] < errors["fp8"] < errors["int4"]


def test_bytes_per_token_from_buffers():
    sizes = {k: make_cache(_config(k, dtype=torch.bfloat16)).bytes_per_token()
             for k in ("plain", "int8", "int4", "fp8")}
    assert sizes["plain"] == L * 2 * HKV * D * 2
    assert sizes["int8"] == sizes["fp8"] == L * 2 * HKV * (D + 2)  # int8 values + one fp16 scale per head
    groups = D // min(32, D) + D // min(64, D)  # default groups: keys 32, values 64 (or the whole head)
    assert sizes["int4"] == L * HKV * (2 * (D // 2) + 2 * 2 * groups)  # nibbles + fp16 scale and offset per group
    assert sizes["int4"] / sizes["plain"] <= 0.3  # the target: <= 0.3x of bf16
    assert sizes["int4"] < sizes["int8"] < sizes["plain"]


def test_slots_allocate_free_and_capacity():
    cache = make_cache(_config(max_batch=3, max_seq_len=8))
    assert cache.allocate(2) == [0, 1] and cache.free_slots == 1
    with pytest.raises(CacheFullError):
        cache.allocate(2)
    cache.free([0])
    assert cache.allocate(1) == [0]
    with pytest.raises(CacheError, match="not allocated"):
        cache.view([2])
    with pytest.raises(CacheError, match="repeat"):
        cache.view([0, 0])
    with pytest.raises(CacheFullError, match="max_seq_len"):
        cache.view([0], [9])
    view = cache.view([0], [8])
    assert isinstance(view, AttentionCache)
    assert view.position_ids().tolist() == [list(range(8))]


def test_view_enforces_layer_order_and_single_use():
    cache = make_cache(_config())
    slot = cache.allocate(1)
    view = cache.view(slot, [3])
    q, kv = torch.randn(1, HQ, 3, D), torch.randn(1, HKV, 3, D)
    with pytest.raises(CacheError, match="in order"):
        view.attend(1, q, kv, kv)
    with pytest.raises(CacheError, match="shape"):
        view.attend(0, q, torch.randn(1, HKV, 3, D + 2), kv)
    view.attend(0, q, kv, kv)
    assert cache.length(slot[0]) == 0  # lengths move only after the last layer
    view.attend(1, q, kv, kv)
    assert view.done and cache.length(slot[0]) == 3
    with pytest.raises(CacheError, match="already finished"):
        view.attend(0, q, kv, kv)
    assert cache.view(slot).position_ids().tolist() == [[3]]


@pytest.mark.parametrize("bad", [dict(kind="int3"), dict(head_dim=0), dict(dtype="float64"),
                                 dict(kind="int4", head_dim=48, group_size=32),
                                 dict(kind="int4", head_dim=64, value_group_size=48), dict(attention="magic"),
                                 dict(scale_dtype="bfloat16")])
def test_config_rejects_bad_values(bad):
    with pytest.raises(CacheConfigError):
        _config(**bad)


def test_config_from_decoder_config():
    from autoui.model.config import DecoderConfig

    dec = DecoderConfig()
    cfg = CacheConfig.for_decoder(dec, kind="int8", max_batch=2)
    assert (cfg.n_layers, cfg.n_kv_heads, cfg.head_dim) == (dec.num_layers, dec.num_kv_heads, dec.resolved_head_dim)
