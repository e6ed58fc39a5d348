"""The fused CPU kernel (autoui.runtime.cpu_fused, csrc/cpu_step.cpp) against the model's own forward."""
from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from autoui.model import load_preset
from autoui.model.vlm import AutoUIModel
from autoui.runtime import CacheConfig, CacheError, CacheFullError, make_cache
from autoui.runtime import cpu_fused
from autoui.runtime.engine import Engine, EngineConfig, EngineError, Request
from tests.test_runtime_engine import _model, _requests, kernel_sized

try:
    cpu_fused.load_extension()
except RuntimeError as exc:  # no C++ compiler: everything here is about the kernel
    pytest.skip(f"fused CPU kernel unavailable: {exc}", allow_module_level=True)


NONE = torch.empty(0)  # no scales: a plain cache


def _variant(name: str):
    cfg = load_preset("tiny")
    dec = cfg.decoder
    if name == "gqa4to1":  # head_dim 32, one KV head for four query heads
        return kernel_sized(cfg)
    if name == "bias_untied":  # Qwen2-style q/k/v biases and a separate lm_head
        return dataclasses.replace(cfg, decoder=dataclasses.replace(dec, qkv_bias=True, tie_word_embeddings=False))
    if name == "odd_head_dim":  # head_dim 12: the kernel's generic (non-vector) paths
        return dataclasses.replace(cfg, decoder=dataclasses.replace(dec, hidden_size=48, intermediate_size=96))
    return cfg


def _fp16_exact(model: AutoUIModel) -> AutoUIModel:
    """Weights rounded to fp16 numbers, as the shipped model's are: the kernel's fp16 GEMV applies."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    return model


def _cache(model, slots=4, seq=96):
    return make_cache(CacheConfig.for_decoder(model.config.decoder, kind="plain", dtype=torch.float32,
                                              max_batch=slots, max_seq_len=seq))


def _reference_logits(model, embeds: torch.Tensor) -> torch.Tensor:
    """Logits [T, V] of the model's own cache-free forward over one sequence's embeddings [T, D]."""
    return model.logits(model.decoder(embeds[None]))[0]


@pytest.mark.parametrize("variant", ["tiny", "gqa4to1", "bias_untied", "odd_head_dim"])
@pytest.mark.parametrize("exact", [False, True])
def test_ragged_forwards_match_the_decoder(variant, exact):
    """Two prompts of different lengths prefilled in one call, then a decode step feeding one token
    to one sequence and a forced run of three to the other: each call's logits equal the model's
    cache-free forward over the whole sequence so far."""
    model = _model(_variant(variant))
    if exact:
        model = _fp16_exact(model)
    cache = _cache(model)
    fused = cpu_fused.FusedModel(model, cache)
    assert bool(fused._weights("decoder")[2].numel()) == (exact and model.config.decoder.hidden_size % 16 == 0)
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(5, model.config.decoder.vocab_size, (n,), generator=g) for n in (7, 19)]
    slots = cache.allocate(2)[::-1]  # slots in reverse order: rows need not follow slot numbers
    emb = model.decoder.embed_tokens
    with torch.no_grad():
        rows = torch.cat([emb(s) for s in seqs])
        logits = fused.forward_embeds(slots, rows, [len(s) for s in seqs])
        for b, s in enumerate(seqs):
            torch.testing.assert_close(logits[b], _reference_logits(model, emb(s))[-1], atol=2e-4, rtol=1e-4)
        new = [[9], [11, 12, 13]]
        logits = fused(slots, new)
        for b, s in enumerate(seqs):
            full = torch.cat([s, torch.tensor(new[b])])
            torch.testing.assert_close(logits[b], _reference_logits(model, emb(full))[-1], atol=2e-4, rtol=1e-4)
    assert [cache.length(s) for s in slots] == [8, 22]


@pytest.mark.parametrize("kind,scale_dtype", [("int8", torch.float16), ("fp8", torch.float16),
                                              ("int4", torch.float16), ("int8", torch.float32),
                                              ("int4", torch.float32)])
def test_quantized_caches_store_and_read_as_the_eager_path_does(kind, scale_dtype):
    """The kernel's int8 / fp8 writes are the cache's own quantization (the same bytes and scales
    as `cache._write` of the same vectors), and its forwards match the eager engine's, which
    dequantizes the same cache."""
    model = _fp16_exact(_model(_variant("gqa4to1")))
    config = CacheConfig.for_decoder(model.config.decoder, kind=kind, dtype=torch.float32, max_batch=2,
                                     max_seq_len=64, scale_dtype=scale_dtype)
    fused_cache, eager_cache = make_cache(config), make_cache(config)
    fused = cpu_fused.FusedModel(model, fused_cache)
    rows = model.decoder.embed_tokens(torch.arange(5, 26)).detach()
    with torch.no_grad():
        fused_logits = fused.forward_embeds(fused_cache.allocate(1), rows, [21])
        view = eager_cache.view(eager_cache.allocate(1), [21])
        eager_logits = model.logits(model.decoder(rows[None], view.position_ids(), cache=view))[0, -1]
    torch.testing.assert_close(fused_logits[0], eager_logits, atol=2e-3, rtol=1e-3)
    # vectors written through the kernel are stored as the cache itself stores them: the same
    # bytes and scales (here all of them; a K/V value on a rounding boundary may differ elsewhere)
    for ours, theirs in ((fused_cache.k, eager_cache.k), (fused_cache.v, eager_cache.v)):
        assert (ours.view(torch.uint8) == theirs.view(torch.uint8)).float().mean() > 0.99
    names = ("k_scale", "v_scale") + (("k_offset", "v_offset") if kind == "int4" else ())
    for name in names:
        torch.testing.assert_close(getattr(fused_cache, name), getattr(eager_cache, name), atol=1e-6, rtol=1e-3)
    with torch.no_grad():  # decode steps through both, eager over its own cache
        step_f = fused([0], [[7]])
        view = eager_cache.view([0], [1])
        step_e = model.logits(model.decoder(model.decoder.embed_tokens(torch.tensor([[7]])), view.position_ids(),
                                            cache=view))[:, -1]
    torch.testing.assert_close(step_f, step_e, atol=2e-3, rtol=1e-3)


def test_engine_serves_quantized_caches_fused():
    model = _fp16_exact(_model(load_preset("tiny")))
    prompts = _requests(model.config, [5, 23, 9])
    for kind in ("int8", "fp8", "int4"):
        outs = {}
        for decode in ("eager", "auto"):
            engine = Engine(model, EngineConfig(max_batch=2, max_seq_len=96, max_new_tokens=10, prefill_dtype="same",
                                                cache_kind=kind, decode=decode))
            assert (engine.fused is not None) == (decode == "auto")
            outs[decode] = engine.generate([Request(ids, px) for ids, px in prompts])
        agree = sum(a == b for a, b in zip(outs["auto"], outs["eager"]))
        assert agree >= 2, (kind, outs)  # a quantization step may flip near a tie; most sequences match


@pytest.mark.parametrize("variant", ["tiny", "gqa4to1", "bias_untied"])
def test_fused_engine_gives_the_eager_engines_tokens(variant):
    """Greedy outputs of the default CPU engine (fused decode and prefill) equal the eager engine's,
    with requests joining, queueing and leaving mid-decode."""
    model = _fp16_exact(_model(_variant(variant)))
    prompts = _requests(model.config, [5, 23, 9, 14])
    outs = {}
    for decode in ("eager", "auto"):
        engine = Engine(model, EngineConfig(max_batch=3, max_seq_len=96, max_new_tokens=12, prefill_dtype="same",
                                            decode=decode))
        assert (engine.fused is not None) == (decode == "auto") and engine.fused_prefill == (decode == "auto")
        outs[decode] = engine.generate([Request(ids, px) for ids, px in prompts])
        assert engine.cache.free_slots == 3
    assert outs["auto"] == outs["eager"]
    assert all(len(o) == 12 for o in outs["auto"])


def test_vision_tower_matches_the_model():
    model = _fp16_exact(_model(load_preset("tiny")))
    fused = cpu_fused.FusedModel(model, _cache(model))
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model.encode_images(pixels)
        torch.testing.assert_close(fused.encode_images(pixels), ref, atol=1e-4, rtol=1e-4)
        bf16 = fused.encode_images(pixels, bf16=True)
    if fused.has_bf16:  # bf16 matmuls with fp32 activations: close, not equal
        assert (bf16 - ref).abs().max() < 0.05 * ref.abs().max()
    else:  # the flag is ignored without bf16 hardware
        assert torch.equal(bf16, fused.encode_images(pixels))
    with pytest.raises(ValueError, match="pixel_values must be"):
        fused.encode_images(torch.zeros(1, 3, 16, 16))


def test_bf16_prefill_stays_close_to_fp32():
    torch.manual_seed(0)
    model = _fp16_exact(AutoUIModel(load_preset("tiny")).eval())  # initial weights: a calm model (no x8)
    cache = _cache(model)
    fused = cpu_fused.FusedModel(model, cache)
    rows = model.decoder.embed_tokens(torch.arange(5, 45))
    with torch.no_grad():
        out = {}
        for bf16 in (False, True):
            slot = cache.allocate(1)
            out[bf16] = fused.forward_embeds(slot, rows, [40], bf16=bf16)
            cache.free(slot)
    scale = out[False].abs().max()
    if fused.has_bf16:
        assert 0 < (out[True] - out[False]).abs().max() < 0.05 * scale
    else:
        assert torch.equal(out[True], out[False])


def test_weights_are_repacked_after_an_in_place_update():
    model = _model(load_preset("tiny"))
    cache = _cache(model)
    fused = cpu_fused.FusedModel(model, cache)
    rows = model.decoder.embed_tokens(torch.arange(5, 15)).detach()
    with torch.no_grad():
        before = fused.forward_embeds(cache.allocate(1), rows, [10])
        model.decoder.layers[0].mlp.down_proj.weight.mul_(0.5)
        after = fused.forward_embeds(cache.allocate(1), rows, [10])
        ref = _reference_logits(model, rows)[-1]
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after[0], ref, atol=2e-4, rtol=1e-4)


def test_bad_calls_raise_and_change_nothing():
    model = _model(load_preset("tiny"))
    cache = _cache(model, slots=2, seq=16)
    fused = cpu_fused.FusedModel(model, cache)
    slot = cache.allocate(1)
    rows = model.decoder.embed_tokens(torch.arange(5, 15)).detach()
    with pytest.raises(CacheError, match="not allocated"):
        fused.forward_embeds([1], rows, [10])
    with pytest.raises(ValueError, match="rows in all"):
        fused.forward_embeds(slot, rows, [9])
    fused.forward_embeds(slot, rows, [10])
    with pytest.raises(CacheFullError, match="max_seq_len"):
        fused.forward_embeds(slot, rows, [10])
    assert cache.length(slot[0]) == 10
    with pytest.raises(RuntimeError, match="slot out of range"):  # the kernel checks what it is handed, too
        fused.ext.ragged_forward(rows[:1].clone(), torch.tensor([7]), torch.tensor([0]), torch.tensor([0]), cache.k,
                                 cache.v, NONE, NONE, NONE, NONE, fused.cos, fused.sin, fused._weights("decoder"), 4,
                                 2, 1e-6, False)


def test_engine_falls_back_to_eager_with_the_reason(monkeypatch, caplog):
    model = _model(load_preset("tiny"))
    with caplog.at_level(logging.INFO, logger="autoui.runtime"):
        assert Engine(model, EngineConfig(max_batch=1, max_seq_len=32, attention="reference")).fused is None  # pinned
        assert Engine(model.to(torch.bfloat16), EngineConfig(max_batch=1, max_seq_len=32)).fused is None
    assert "decode: eager PyTorch (the model is torch.bfloat16, the fused kernel is fp32-only)" in caplog.text
    assert not cpu_fused.serves(model)
    with pytest.raises(EngineError, match="fp32-only"):
        Engine(model, EngineConfig(max_batch=1, max_seq_len=32, decode="fused"))
    model.float()
    assert cpu_fused.serves(model)
    bf16_cache = make_cache(CacheConfig.for_decoder(model.config.decoder, kind="plain", dtype=torch.bfloat16))
    assert "the plain cache (torch.bfloat16) is not one the kernel reads" in cpu_fused.unsupported(model, bf16_cache)
    monkeypatch.setitem(cpu_fused._EXT, "error", "no compiler here")
    monkeypatch.delitem(cpu_fused._EXT, "module")
    engine = Engine(model, EngineConfig(max_batch=1, max_seq_len=64, max_new_tokens=4))
    assert engine.fused is None and not engine.fused_prefill
    ids, px = _requests(model.config, [6])[0]
    assert len(engine.generate([Request(ids, px)])[0]) == 4  # eager decoding still serves
    with pytest.raises(EngineError, match="no compiler here"):
        Engine(model, EngineConfig(max_batch=1, max_seq_len=32, decode="fused"))


def test_half_copy_only_when_fp16_is_exact():
    exact = torch.randn(32, 16).half().float()
    assert torch.equal(cpu_fused.half_copy(exact), exact.t().half())
    assert cpu_fused.half_copy(exact + 1e-4).numel() == 0  # fp16 would round these
    assert cpu_fused.half_copy(exact[:8]).numel() == 0  # rows not a multiple of 16 (the GEMV's vector width)


def test_build_is_keyed_by_the_cpu_and_prebuildable(monkeypatch, capsys):
    name = cpu_fused.extension_name()
    monkeypatch.setattr(cpu_fused, "_cpu_signature", lambda: "flags: something else")
    assert cpu_fused.extension_name() != name  # a -march=native build is never reused on another CPU
    monkeypatch.undo()
    assert cpu_fused.main(["--build"]) == 0
    assert "fused CPU decode kernel ready" in capsys.readouterr().out


def test_malloc_setting_can_be_skipped(monkeypatch):
    monkeypatch.delitem(cpu_fused._EXT, "malloc", raising=False)
    monkeypatch.setenv("AUTOUI_MALLOC", "default")
    assert cpu_fused.keep_freed_memory() is False


def test_kernel_rejects_mismatched_shapes():
    model = _model(load_preset("tiny"))
    cache = _cache(model, slots=1, seq=16)
    fused = cpu_fused.FusedModel(model, cache)
    one = torch.tensor([0])
    with pytest.raises(RuntimeError, match="hidden size"):
        fused.ext.ragged_forward(torch.zeros(1, 80), one, one, one, cache.k, cache.v, NONE, NONE, NONE, NONE, fused.cos,
                                 fused.sin,
                                 fused._weights("decoder"), 4, 2, 1e-6, False)
    with pytest.raises(RuntimeError, match="patch width"):
        fused.ext.vision_forward(torch.zeros(16, 100), 1, fused._weights("vision"), 2, 2, 1e-6, True, False)


@pytest.mark.skipif(__import__("platform").machine() != "x86_64", reason="x86 instruction-set levels")
@pytest.mark.parametrize("arch", ["x86-64-v3", "x86-64"])
def test_other_instruction_sets_compute_the_same(arch):
    """The kernel's AVX2 paths (x86-64-v3: what an AVX2-only CPU compiles) and scalar paths
    (x86-64) give the native build's results; serving only ever builds `-march=native`."""
    model = _fp16_exact(_model(_variant("gqa4to1")))
    cache = _cache(model)
    native = cpu_fused.FusedModel(model, cache)
    other = cpu_fused.FusedModel(model, cache)
    other.ext = cpu_fused.load_extension(arch)
    assert other.ext.has_f16_gemv() == (arch == "x86-64-v3")
    g = torch.Generator().manual_seed(3)
    rows = torch.randn(30, model.config.decoder.hidden_size, generator=g)
    pixels = torch.randn(2, 3, 32, 32, generator=g)
    with torch.no_grad():
        out = {}
        for name, fused in (("native", native), ("other", other)):
            slots = cache.allocate(2)
            prefill = fused.forward_embeds(slots, rows, [17, 13])
            step = fused(slots, [[7], [8, 9]])
            out[name] = (prefill, step, fused.encode_images(pixels))
            cache.free(slots)
    for a, b in zip(out["native"], out["other"]):
        torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4)

