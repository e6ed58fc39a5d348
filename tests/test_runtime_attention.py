"""Attention backends: SDPA, flash-attn and the Triton decode kernel against the reference."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from autoui.runtime import CacheConfig, CacheConfigError, make_cache, select_backend
from autoui.runtime.attention import reference_attention, sdpa_attention

try:
    import triton  # noqa: F401
    HAVE_TRITON = True
except ImportError:
    HAVE_TRITON = False


def _inputs(B=3, Hq=6, Hkv=2, T=4, Lk=10, D=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Hq, T, D, generator=g)
    k, v = torch.randn(B, Lk, Hkv, D, generator=g), torch.randn(B, Lk, Hkv, D, generator=g)
    return q, k, v


def _explicit_mask(B, T, Lk, start, new):
    j = torch.arange(Lk)
    q_pos = torch.tensor(start)[:, None] + torch.arange(T)[None]
    k_len = torch.tensor(start) + torch.tensor(new)
    return ((j[None, None] <= q_pos[..., None]) & (j[None, None] < k_len[:, None, None]))[:, None]


@pytest.mark.parametrize("kind", ["none", "causal", "explicit"])
def test_sdpa_matches_reference(kind):
    T, Lk = (1, 10) if kind == "none" else (4, 4) if kind == "causal" else (4, 10)
    q, k, v = _inputs(T=T, Lk=Lk)
    mask = _explicit_mask(3, T, Lk, [6, 2, 0], [4, 3, 1]) if kind == "explicit" else None
    ref = reference_attention(q, k, v, kind, mask)
    assert torch.allclose(sdpa_attention(q, k, v, kind, mask), ref, atol=1e-5)


def test_reference_masks_keys_it_must_not_see():
    """Changing keys a query may not see leaves its output unchanged."""
    q, k, v = _inputs(B=1, T=2, Lk=6)
    mask = _explicit_mask(1, 2, 6, [3], [2])  # keys 0..4 exist; query 0 sees 0..3, query 1 sees 0..4
    out = reference_attention(q, k, v, "explicit", mask)
    k2, v2 = k.clone(), v.clone()
    k2[:, 5], v2[:, 5] = 100.0, 100.0  # beyond the sequence
    k2[:, 4], v2[:, 4] = 50.0, 50.0  # the second new token: invisible to the first
    out2 = reference_attention(q, k2, v2, "explicit", mask)
    assert torch.equal(out[:, :, 0], out2[:, :, 0])
    assert not torch.allclose(out[:, :, 1], out2[:, :, 1])


def test_selection_logs_one_line(caplog):
    with caplog.at_level(logging.INFO, logger="autoui.runtime"):
        backend = select_backend(CacheConfig(kind="int8", n_layers=1))
    lines = [r.getMessage() for r in caplog.records if r.name == "autoui.runtime"]
    assert len(lines) == 1 and "sdpa" in lines[0] and "int8" in lines[0]
    assert backend.describe().startswith("sdpa")


def test_unavailable_backends_are_refused():
    if not torch.cuda.is_available():
        with pytest.raises(CacheConfigError, match="flash"):
            make_cache(CacheConfig(attention="flash", n_layers=1))
    with pytest.raises(CacheConfigError, match="plain/int8/int4"):
        select_backend(CacheConfig(kind="fp8", attention="triton", n_layers=1))


_TRITON_SCRIPT = textwrap.dedent("""
    import torch
    from autoui.runtime import CacheConfig, make_cache
    from autoui.runtime.attention import reference_attention
    from autoui.runtime.attention.triton_decode import cache_parts, triton_decode_attention
    torch.manual_seed(0)
    worst = 0.0
    # (kind, (q heads, kv heads, head_dim, key group, value group)); a group may span both packed halves
    for kind, (hq, hkv, d, gs, gv) in [("plain", (8, 2, 64, 32, 32)), ("int8", (4, 2, 64, 32, 32)),
                                       ("int4", (6, 2, 64, 16, 16)),
                                       ("int4", (2, 2, 32, 16, 32)), ("int4", (4, 2, 64, 32, 64)),
                                       ("int4", (4, 2, 64, 64, 16)), ("int4", (2, 2, 128, 32, 64))]:
        cache = make_cache(CacheConfig(kind=kind, n_layers=1, n_kv_heads=hkv, head_dim=d, max_batch=4,
                                       max_seq_len=300, group_size=gs, value_group_size=gv, attention="triton"))
        slots = cache.allocate(3)
        lens = [70, 260, 5]
        t = max(lens)
        cache.view(slots, lens).attend(0, torch.randn(3, hq, t, d), torch.randn(3, hkv, t, d) * 2 + 0.5,
                                       torch.randn(3, hkv, t, d))
        order = [slots[2], slots[0], slots[1]]
        q, k, v = torch.randn(3, hq, 1, d), torch.randn(3, hkv, 1, d), torch.randn(3, hkv, 1, d)
        view = cache.view(order)
        fused = view.attend(0, q, k, v)  # the cache path: writes, then the kernel
        assert view.fused and view.fused.name == "triton-decode"
        kd, vd = cache._gather(0, view.selection, view.max_len, torch.float32)
        ref = reference_attention(q, kd, vd, *view.mask(1))
        worst = max(worst, (fused - ref).abs().max().item())
        split = triton_decode_attention(q[:, :, 0], cache_parts(cache, 0), view.slot_index, view.k_len, gs,
                                        kind == "int4", view.max_len,
                                        splits=4, value_group_size=gv)
        worst = max(worst, (split - ref[:, :, 0]).abs().max().item())
    print("MAXERR", worst)
""")


@pytest.mark.skipif(not HAVE_TRITON, reason="triton is not installed")
def test_triton_decode_kernel_in_interpreter_matches_reference():
    """The fused plain/int8/int4 kernel, run by Triton's CPU interpreter, equals dequantize + reference."""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.getcwd())
    proc = subprocess.run([sys.executable, "-c", _TRITON_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = float(proc.stdout.split("MAXERR")[-1])
    assert err < 1e-4


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("kind", ["plain", "int8", "int4"])
def test_triton_decode_on_gpu(kind):
    if not HAVE_TRITON:
        pytest.skip("triton is not installed")
    cache = make_cache(CacheConfig(kind=kind, n_layers=1, n_kv_heads=2, head_dim=128, max_batch=8,
                                   max_seq_len=4096, device="cuda", dtype="float16"))
    slots = cache.allocate(8)
    lens = [3000, 17, 900, 4000, 1, 256, 2048, 64]
    t = max(lens)
    cache.view(slots, lens).attend(0, *(torch.randn(8, h, t, 128, device="cuda", dtype=torch.float16)
                                        for h in (8, 2, 2)))
    q, k, v = (torch.randn(8, h, 1, 128, device="cuda", dtype=torch.float16) for h in (8, 2, 2))
    view = cache.view(slots)
    out = view.attend(0, q, k, v)
    assert view.fused and view.fused.name == "triton-decode"
    kd, vd = cache._gather(0, view.selection, view.max_len, torch.float32)
    ref = reference_attention(q.float(), kd, vd, *view.mask(1))
    assert torch.allclose(out.float(), ref, atol=2e-3)


@pytest.mark.gpu
@needs_cuda
def test_flash_kvcache_matches_reference():
    pytest.importorskip("flash_attn")
    cache = make_cache(CacheConfig(n_layers=1, n_kv_heads=2, head_dim=64, max_batch=4, max_seq_len=512,
                                   device="cuda", dtype="bfloat16"))
    slots = cache.allocate(3)
    cache.view(slots, [100, 7, 300]).attend(0, *(torch.randn(3, h, 300, 64, device="cuda", dtype=torch.bfloat16)
                                                 for h in (8, 2, 2)))
    q, k, v = (torch.randn(3, h, 1, 64, device="cuda", dtype=torch.bfloat16) for h in (8, 2, 2))
    view = cache.view(slots)
    out = view.attend(0, q, k, v)
    assert view.fused and view.fused.name == "flash-attn"
    kd, vd = cache._gather(0, view.selection, view.max_len, torch.float32)
    ref = reference_attention(q.float(), kd, vd, *view.mask(1))
    assert torch.allclose(out.float(), ref, atol=2e-2)
