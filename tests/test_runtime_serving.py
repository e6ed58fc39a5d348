"""The serving path runs on the runtime engine: `generate_ids` / `predict_action` against the
reference `generate_greedy`, constrained outputs always parse, join/leave mid-decode, and the
shipped-model default of `autoui predict`."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from autoui import agent
from autoui.actions import Action, ActionParseError, parse_action
from autoui.agent import RuntimeOptions, generate_ids, predict_action
from autoui.cli import main
from autoui.model import AutoUIModel, load_preset
from autoui.model.preprocess import ScreenPreprocessor
from autoui.model.prompt import PromptLimits, build_inputs
from autoui.model.tokenizer import ActionTokenizer
from autoui.runtime.engine import Engine, EngineConfig, Request



@pytest.fixture(scope="module")
def tok() -> ActionTokenizer:
    return ActionTokenizer.load()


@pytest.fixture(scope="module")
def model(tok) -> AutoUIModel:
    torch.manual_seed(0)
    m = AutoUIModel(load_preset("tiny").with_tokenizer(tok)).eval()
    with torch.no_grad():  # larger weights than the init: varied, non-repeating greedy outputs
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(8)
    return m


def _screens(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(100, 300)), 120, 3), dtype=np.uint8) for _ in range(n)]


def _inputs(model, tok, screen, goal, history=()):
    pixels, _ = ScreenPreprocessor.from_config(model.config)(screen)
    return torch.tensor([build_inputs(tok, model.config, goal, history)]), pixels[None]  # [1, T], [1, 3, S, S]


def test_generate_ids_equals_reference_greedy_without_constraint(model, tok):
    goals = ["open the settings app", "search for a cheap flight to paris and book it", "go home"]
    for screen, goal in zip(_screens(3), goals):
        ids, px = _inputs(model, tok, screen, goal, [Action.back()])
        ref = model.generate_greedy(px, ids, max_new_tokens=10, eos_token_id=tok.eos_id)[0].tolist()
        out = generate_ids(model, px, ids, 10, tok.eos_id, prefill_dtype="same")[0].tolist()
        assert out == ref and len(set(ref)) > 2


def test_predict_action_unconstrained_reports_the_reference_text(model, tok):
    from autoui.model.prompt import decode_text

    screen, goal = _screens(1, seed=3)[0], "turn on wifi"
    ids, px = _inputs(model, tok, screen, goal)
    ref = decode_text(tok, model.generate_greedy(px, ids, max_new_tokens=16, eos_token_id=tok.eos_id)[0].tolist())
    limits = PromptLimits(max_target_tokens=16)
    try:
        pred = predict_action(model, tok, screen, goal, (), "compact", limits, RuntimeOptions(constrained=False, prefill_dtype="same"))
    except ActionParseError as exc:  # a random model usually writes no action: the raw text is kept
        assert exc.text == ref
    else:
        assert pred.raw_text == ref


@pytest.mark.parametrize("fmt,budget,kv", [("compact", 16, "plain"), ("compact", 16, "int8"), ("compact", 20, "fp8"), ("autoui", 96, "plain")])
def test_constrained_predictions_always_parse(model, tok, fmt, budget, kv):
    limits = PromptLimits(max_target_tokens=budget)
    for i, screen in enumerate(_screens(4, seed=1)):
        pred = predict_action(model, tok, screen, f"goal number {i}", [Action.tap(0.5, 0.5)] * i, fmt, limits,
                              RuntimeOptions(kv_cache=kv))
        assert pred.new_tokens <= budget
        assert parse_action(pred.raw_text).action == pred.action and pred.parsed.fmt == fmt


def test_engines_are_reused_and_reset_after_errors(model, tok):
    ids, px = _inputs(model, tok, _screens(1)[0], "g")
    generate_ids(model, px, ids, 4, tok.eos_id)
    engine = agent._ENGINES[model][("plain", id(None), "auto")]
    with pytest.raises(Exception):
        generate_ids(model, px[:, :, :8], ids, 4, tok.eos_id)  # wrong screenshot size fails inside the engine
    assert not engine.active and not engine.waiting and engine.cache.free_slots == engine.config.max_batch
    generate_ids(model, px, ids, 4, tok.eos_id)
    assert agent._ENGINES[model][("plain", id(None), "auto")] is engine
    with pytest.raises(ValueError, match="eos_token_id"):
        generate_ids(model, px, ids, 4, tok.eos_id + 1)
    with pytest.raises(ValueError, match="kv_cache"):
        RuntimeOptions(kv_cache="int2")
    with pytest.raises(ValueError, match="prefill_dtype"):
        RuntimeOptions(prefill_dtype="int8")


def test_a_request_joining_mid_decode_gets_the_tokens_it_gets_alone(model, tok):
    prompts = [_inputs(model, tok, s, g) for s, g in zip(_screens(3, seed=5), ["a", "open the mail app", "b c d"])]
    alone = []
    for ids, px in prompts:
        engine = Engine(model, EngineConfig(max_batch=1, max_seq_len=512, max_new_tokens=10))
        alone.append(engine.generate([Request(ids[0].tolist(), px[0])])[0])
    engine = Engine(model, EngineConfig(max_batch=3, max_seq_len=512, max_new_tokens=10))
    reqs = [Request(ids[0].tolist(), px[0]) for ids, px in prompts]
    engine.submit(reqs[0])
    engine.step()
    engine.step()  # the first is decoding
    engine.submit(reqs[1])
    engine.step()
    engine.submit(reqs[2])
    while engine.active or engine.waiting:
        engine.step()
    assert [r.tokens for r in reqs] == alone and len({tuple(a) for a in alone}) == 3


def test_default_model_dir_and_predict_without_model(model, tok, tmp_path, monkeypatch, capsys):
    from PIL import Image

    monkeypatch.setattr(agent, "DEFAULT_MODEL_DIR", tmp_path / "default-model")
    assert agent.default_model_dir() is None
    image = tmp_path / "screen.png"
    Image.fromarray(_screens(1)[0]).save(image)
    assert main(["predict", "--image", str(image), "--goal", "g"]) == 2
    assert "no shipped model" in capsys.readouterr().err
    model.save_pretrained(tmp_path / "default-model", tokenizer=tok)
    assert agent.default_model_dir() == tmp_path / "default-model"
    assert main(["predict", "--image", str(image), "--goal", "open settings", "--kv-cache", "int4",
                 "--max-new-tokens", "16"]) == 0
    parse_action(capsys.readouterr().out.strip())  # constrained by default: always an action


def test_jump_forward_gives_the_tokens_of_step_by_step_constrained_decoding(model, tok):
    from autoui.agent import action_constraint

    prompts = [_inputs(model, tok, s, g) for s, g in zip(_screens(4, seed=7), ["a", "open mail", "b c", "type hi"])]
    outs = {}
    for fmt in ("compact", "autoui"):
        for jump in (True, False):
            engine = Engine(model, EngineConfig(max_batch=4, max_seq_len=512, max_new_tokens=60),
                            constraint=action_constraint(tok, fmt))
            if not jump:
                engine._forced = {}
            outs[fmt, jump] = engine.generate([Request(ids[0].tolist(), px[0]) for ids, px in prompts])
        assert outs[fmt, True] == outs[fmt, False]
        assert all(o[-1] == tok.eos_id for o in outs[fmt, True])
