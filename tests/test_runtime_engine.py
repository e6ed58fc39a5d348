"""The batched engine on the tiny model: greedy output equals the model's reference
`generate_greedy` token for token, with requests joining mid-way and queueing for slots."""
from __future__ import annotations

import pytest
import torch

from autoui.actions import parse_compact
from autoui.model import AutoUIModel, load_preset
from autoui.runtime import ActionConstraint
from autoui.runtime.engine import Engine, EngineConfig, EngineError, Request



def _model(config):
    torch.manual_seed(0)
    model = AutoUIModel(config).eval()
    with torch.no_grad():  # larger weights than the init: varied, non-repeating greedy outputs
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(8)
    return model


def _requests(cfg, lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        text = torch.randint(5, cfg.decoder.vocab_size, (n,), generator=g).tolist()
        ids = [cfg.bos_token_id] + [cfg.image_token_id] * cfg.num_image_tokens + text
        out.append((ids, torch.randn(3, cfg.image_size, cfg.image_size, generator=g)))
    return out


def test_greedy_matches_reference_with_joins_and_queueing():
    model = _model(load_preset("tiny"))
    prompts = _requests(model.config, [5, 23, 9, 14])
    refs = [model.generate_greedy(px[None], torch.tensor([ids]), max_new_tokens=12)[0].tolist() for ids, px in prompts]
    engine = Engine(model, EngineConfig(max_batch=3, max_seq_len=96, max_new_tokens=12, prefill_dtype="same"))
    reqs = [Request(ids, px) for ids, px in prompts]
    for r in reqs[:2]:
        engine.submit(r)
    for _ in range(3):
        engine.step()
    for r in reqs[2:]:  # join while the first two are decoding; the fourth waits for a free slot
        engine.submit(r)
    engine.step()
    assert len(engine.active) == 3 and len(engine.waiting) == 1
    while engine.waiting or engine.active:
        engine.step()
    assert len({tuple(r) for r in refs}) == len(refs) and len(set(refs[0])) > 3  # varied outputs
    for r, ref in zip(reqs, refs):
        assert r.done and r.tokens == ref[:len(r.tokens)] and len(r.tokens) == len(ref)
    assert engine.cache.free_slots == 3


def test_prefill_twin_runs_prefill_in_its_dtype_and_decode_in_the_models(monkeypatch):
    import autoui.runtime.engine as engine_mod

    model = _model(load_preset("tiny"))
    monkeypatch.setattr(engine_mod, "cpu_bf16_matmul", lambda: "")
    assert Engine(model, EngineConfig(max_batch=1, max_seq_len=96)).prefiller is model  # auto without bf16 hardware
    monkeypatch.setattr(engine_mod, "cpu_bf16_matmul", lambda: "AVX512-BF16")
    assert Engine(model, EngineConfig(max_batch=1, max_seq_len=96)).prefiller.dtype == torch.bfloat16
    monkeypatch.setattr(engine_mod, "cpu_bf16_matmul", lambda: "AMX")
    engine = Engine(model, EngineConfig(max_batch=2, max_seq_len=96, max_new_tokens=6))  # auto with AMX
    twin = engine.prefiller
    assert twin is not model and twin.dtype == torch.bfloat16 and model.dtype == torch.float32
    prompts = _requests(model.config, [5, 9])
    outs = engine.generate([Request(ids, px) for ids, px in prompts])
    for (ids, px), out in zip(prompts, outs):
        first = twin.generate_greedy(px[None].bfloat16(), torch.tensor([ids]), max_new_tokens=1)[0].tolist()
        assert out[:1] == first and len(out) == 6  # the first token is the bf16 prefill's choice
    x = torch.randn(1, 3, model.config.decoder.hidden_size)
    assert torch.equal(model.decoder(x), Engine(model, EngineConfig(prefill_dtype="same")).prefiller.decoder(x))


def test_cpu_bf16_matmul_names_the_hardware(monkeypatch):
    import autoui.runtime.engine as engine_mod

    flags = {"_is_amx_tile_supported": False, "_is_avx512_bf16_supported": False}
    for name in flags:
        monkeypatch.setattr(torch.cpu, name, lambda name=name: flags[name], raising=False)
    assert engine_mod.cpu_bf16_matmul() == ""
    flags["_is_avx512_bf16_supported"] = True
    assert engine_mod.cpu_bf16_matmul() == "AVX512-BF16"
    flags["_is_amx_tile_supported"] = True
    assert engine_mod.cpu_bf16_matmul() == "AMX"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: (_ for _ in ()).throw(RuntimeError("no")))
    assert engine_mod.cpu_bf16_matmul() == "AVX512-BF16"  # a probe that fails counts as "no"


def test_constrained_engine_outputs_parse():
    from autoui.actions import Action, format_action
    from autoui.model.tokenizer import ActionTokenizer

    corpus = [format_action(a, "compact") for a in (Action.tap(0.2, 0.5), Action.type("hello"), Action.back())] * 5
    tok = ActionTokenizer.build(corpus, vocab_size=300, min_frequency=1)
    model = _model(load_preset("tiny").with_tokenizer(tok))
    constraint = ActionConstraint.from_tokenizer(tok, "compact")
    engine = Engine(model, EngineConfig(max_batch=4, max_seq_len=96, max_new_tokens=16), constraint=constraint)
    outs = engine.generate([Request(ids, px) for ids, px in _requests(model.config, [4, 11, 7, 3, 8])])
    for ids in outs:
        assert ids[-1] == tok.eos_id or len(ids) == 16
        parse_compact(tok.decode(ids))


def test_bad_requests_are_refused():
    model = _model(load_preset("tiny"))
    engine = Engine(model, EngineConfig(max_batch=1, max_seq_len=40, max_new_tokens=8))
    (ids, px), = _requests(model.config, [30])
    with pytest.raises(EngineError, match="max_seq_len"):
        engine.submit(Request(ids, px))
    with pytest.raises(EngineError, match="at least one"):
        engine.submit(Request([], None))
    with pytest.raises(EngineError, match="cache_kind"):
        EngineConfig(cache_kind="int2")
