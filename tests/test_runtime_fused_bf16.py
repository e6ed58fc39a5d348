"""The fused CPU kernel's bf16 paths: AMX tile products (and their fused SiLU / GELU epilogues),
prefill attention on AMX, bf16 decode steps of many sequences, and the helpers around them
(patchify, masked argmax). On a CPU without AMX the same calls take oneDNN / fp32 paths and the
tests check those instead."""
from __future__ import annotations

import pytest
import torch

from autoui.model import load_preset
from autoui.model.vlm import AutoUIModel
from autoui.runtime import cpu_fused
from autoui.runtime.engine import Engine, EngineConfig, Request
from tests.test_runtime_engine import _requests, kernel_sized
from tests.test_runtime_fused import _cache, _fp16_exact, _reference_logits

try:
    EXT = cpu_fused.load_extension()
except RuntimeError as exc:  # no C++ compiler: everything here is about the kernel
    pytest.skip(f"fused CPU kernel unavailable: {exc}", allow_module_level=True)

AMX = EXT.has_amx()
NONE = torch.empty(0)


def _bf16_reference(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor = NONE) -> torch.Tensor:
    """x @ w^T in fp32 from bf16 operands (what a bf16 x bf16 -> fp32 product computes, up to order)."""
    y = x.float() @ w.float().t()
    return y + bias if bias.numel() else y


@pytest.mark.parametrize("m", [1, 17, 32, 33, 95])
@pytest.mark.parametrize("k,n", [(64, 96), (256, 512), (704, 256)])
def test_bf16_products_match_the_reference(m, k, n):
    """Rows that do not fill a 32-row block (1, 17, 33, 95) are padded inside and not written back."""
    g = torch.Generator().manual_seed(m * 1000 + k + n)
    x = torch.randn(m, k, generator=g).bfloat16()
    w = torch.randn(n, k, generator=g).bfloat16()
    bias = torch.randn(n, generator=g)
    ref = _bf16_reference(x, w, bias)
    tol = dict(atol=2e-3 * k ** 0.5, rtol=1e-3)
    # oneDNN with [N, K] weights: its result is rounded to bf16 before the bias is added in fp32
    torch.testing.assert_close(EXT.bf16_matmul(x, w, bias), ref, atol=tol["atol"], rtol=8e-3)
    if AMX:
        torch.testing.assert_close(EXT.bf16_matmul(x, cpu_fused.vnni_pack(w), bias), ref, **tol)
        torch.testing.assert_close(EXT.bf16_matmul(x, cpu_fused.vnni_pack(w), NONE), ref - bias, **tol)


def test_vnni_pack_layout():
    """Tile (nb, kb), row r, entry 2n + t holds w[nb*16 + n, kb*32 + 2r + t]; gated packing
    alternates 16-row blocks of the gate and up halves."""
    w = torch.arange(64 * 64, dtype=torch.float32).reshape(64, 64)
    p = cpu_fused.vnni_pack(w)
    assert p.shape == (4, 2, 16, 32)
    for nb, kb, r, n, t in [(0, 0, 0, 0, 0), (1, 1, 5, 3, 1), (3, 0, 15, 15, 1), (2, 1, 7, 9, 0)]:
        assert p[nb, kb, r, 2 * n + t] == w[nb * 16 + n, kb * 32 + 2 * r + t]
    gated = cpu_fused.vnni_pack(w, gated=True)
    assert torch.equal(gated[0], p[0]) and torch.equal(gated[1], p[2])  # gate 0, up 0
    assert torch.equal(gated[2], p[1]) and torch.equal(gated[3], p[3])  # gate 1, up 1


def test_packed_weights_are_used_where_amx_is():
    model = AutoUIModel(load_preset("tiny")).eval()
    fused = cpu_fused.FusedModel(model, _cache(model))
    forms = [w for w in fused._weights("decoder") + fused._weights("vision") if w.dtype == torch.bfloat16 and w.numel()]
    assert bool(forms) == fused.has_bf16  # bf16 copies only where the CPU multiplies bf16 in hardware
    packable = [w for w in forms if w.dim() == 4 or (w.shape[0] % 32 == 0 and w.shape[1] % 32 == 0)]
    assert packable or not fused.has_bf16
    assert all(w.dim() == (4 if AMX else 2) for w in packable)


@pytest.mark.parametrize("variant", ["tiny", "gqa4to1"])
def test_bf16_forwards_stay_close_to_fp32(variant):
    """A prefill of two sequences (head size 32 in gqa4to1: attention on AMX tiles where there are
    any), then a decode step of three sequences and a forced run, all in bf16, against fp32."""
    torch.manual_seed(0)
    cfg = load_preset("tiny") if variant == "tiny" else kernel_sized(load_preset("tiny"))
    model = _fp16_exact(AutoUIModel(cfg).eval())
    cache = _cache(model, slots=8)
    fused = cpu_fused.FusedModel(model, cache)
    emb = model.decoder.embed_tokens.weight.detach()
    lens = [40, 23, 17]
    seqs = [emb[torch.randint(5, cfg.decoder.vocab_size, (n + 3,))] for n in lens]
    out: dict[bool, list[torch.Tensor]] = {}
    with torch.no_grad():
        for bf16 in (False, True):
            slots = cache.allocate(3)
            steps = [fused.forward_embeds(slots, torch.cat([s[:n] for s, n in zip(seqs, lens)]), lens, bf16=bf16),
                     fused.forward_embeds(slots, torch.cat([s[n:n + 1] for s, n in zip(seqs, lens)]), [1] * 3,
                                          bf16=bf16),
                     fused.forward_embeds(slots[:1], seqs[0][lens[0] + 1:], [2], bf16=bf16)]
            out[bf16] = steps
            cache.free(slots)
        ref = [_reference_logits(model, s) for s in seqs]
    want = [torch.stack([r[n - 1] for r, n in zip(ref, lens)]), torch.stack([r[n] for r, n in zip(ref, lens)]),
            ref[0][lens[0] + 2][None]]
    for fp32, bf16, expected in zip(out[False], out[True], want):
        torch.testing.assert_close(fp32, expected, atol=2e-4, rtol=1e-4)
        scale = expected.abs().max()
        assert (bf16 - expected).abs().max() < 0.05 * scale
        if fused.has_bf16:
            assert not torch.equal(bf16, fp32)  # the bf16 paths did run


def test_vision_tower_bf16_with_fused_gelu():
    torch.manual_seed(0)
    model = AutoUIModel(load_preset("tiny")).eval()
    fused = cpu_fused.FusedModel(model, _cache(model))
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref = model.encode_images(pixels)
        listed = fused.encode_images(list(pixels), bf16=True)
        stacked = fused.encode_images(pixels, bf16=True)
    assert torch.equal(listed, stacked)  # a list of screens is the same batch
    assert (listed - ref).abs().max() < 0.05 * ref.abs().max()


@pytest.mark.parametrize("bf16", [False, True])
def test_patchify_cuts_patches_in_the_towers_order(bf16):
    images = [torch.randn(3, 56, 56) for _ in range(3)]
    ref = torch.stack(images).reshape(3, 3, 2, 28, 2, 28).permute(0, 2, 4, 1, 3, 5).reshape(12, 3 * 28 * 28)
    got = EXT.patchify(images, 28, bf16)
    assert torch.equal(got, ref.bfloat16() if bf16 else ref)
    with pytest.raises(RuntimeError, match="one shape"):
        EXT.patchify([images[0], torch.randn(3, 28, 28)], 28, bf16)


def test_masked_argmax_is_argmax_over_the_allowed():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 300, generator=g)
    logits[2, 10] = logits[2, 20] = 50.0  # a tie: the first wins, as argmax
    allowed = torch.rand(6, 300, generator=g) > 0.7
    allowed[2, 10] = allowed[2, 20] = True
    allowed[4] = False  # nothing allowed: index 0, as argmax over all -inf
    ref = logits.masked_fill(~allowed, float("-inf")).argmax(-1)
    assert torch.equal(EXT.masked_argmax(logits, allowed), ref)
    assert int(EXT.masked_argmax(logits, allowed)[2]) == 10


def test_engine_batches_stay_close_with_bf16_decode_steps():
    """An engine on the default settings (bf16 prefills, and bf16 decode steps of 3+ sequences
    where the CPU multiplies bf16) gives nearly the fp32 engine's tokens for a batch of four."""
    torch.manual_seed(0)
    cfg = kernel_sized(load_preset("tiny"))
    model = _fp16_exact(AutoUIModel(cfg).eval())
    prompts = _requests(cfg, [30, 21, 44, 18])
    outs = []
    for dtype in ("auto", "same"):
        engine = Engine(model, EngineConfig(max_batch=4, max_seq_len=96, prefill_dtype=dtype, decode="fused"))
        outs.append(engine.generate([Request(ids, px, max_new_tokens=12) for ids, px in prompts]))
    same = sum(a == b for a, b in zip(*outs))
    assert same >= 3 if engine.fused.has_bf16 else same == 4


@pytest.mark.skipif(not AMX, reason="bf16 decode steps run on AMX tiles only")
def test_bf16_rows_do_not_depend_on_the_batch():
    """On AMX each row's arithmetic is its own: a sequence's prefill and decode logits are the same
    bits alone and next to others (so a request's tokens do not depend on who else is served)."""
    torch.manual_seed(0)
    cfg = kernel_sized(load_preset("tiny"))
    model = _fp16_exact(AutoUIModel(cfg).eval())
    cache = _cache(model, slots=8)
    fused = cpu_fused.FusedModel(model, cache)
    emb = model.decoder.embed_tokens.weight.detach()
    seqs = [emb[torch.randint(5, cfg.decoder.vocab_size, (n,))] for n in (33, 20, 41)]
    with torch.no_grad():
        alone = cache.allocate(1)
        first = [fused.forward_embeds(alone, seqs[0][:-1], [32], bf16=True),
                 fused.forward_embeds(alone, seqs[0][-1:], [1], bf16=True)]
        slots = cache.allocate(3)
        lens = [32, 19, 40]
        batch = [fused.forward_embeds(slots, torch.cat([s[:n] for s, n in zip(seqs, lens)]), lens, bf16=True),
                 fused.forward_embeds(slots, torch.cat([s[n:n + 1] for s, n in zip(seqs, lens)]), [1] * 3, bf16=True)]
    assert torch.equal(first[0][0], batch[0][0]) and torch.equal(first[1][0], batch[1][0])
