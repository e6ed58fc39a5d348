"""Pieces of autoui.train: the config and its generated CLI, the lr schedule, the vision-feature cache."""
from __future__ import annotations

import argparse
import math
import re

import pytest
import torch

from autoui.model.config import load_preset
from autoui.model.tokenizer import ActionTokenizer
from autoui.model.vlm import AutoUIModel
from autoui.train.config import TrainConfig, TrainConfigError, add_dataclass_arguments, config_from_args
from autoui.train.features import FeatureCache, cached_vision, tower_fingerprint
from autoui.train.schedule import make_scheduler, warmup_cosine


def _parse(argv: list[str]) -> TrainConfig:
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, TrainConfig)
    return config_from_args(parser.parse_args(argv))


def test_cli_flags_follow_the_dataclass():
    cfg = _parse(["--data", "a,b", "--out", "r", "--steps", "7", "--lr", "3e-4", "--no-with-plan",
                  "--freeze-vision", "--cache-vision-features", "--sample", "google_apps=0.1,install=0.5",
                  "--task-weight", "click-tab-2=2.5,click-test=0.4"])
    assert cfg.task_weight == {"click-tab-2": 2.5, "click-test": 0.4}
    assert cfg.data == ("a", "b") and cfg.steps == 7 and cfg.lr == 3e-4
    assert cfg.with_plan is False and cfg.freeze_vision and cfg.cache_vision_features
    assert cfg.sample == {"google_apps": 0.1, "install": 0.5}
    assert cfg.batch_size == TrainConfig.batch_size  # untouched fields keep the dataclass default
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("argv, message", [
    (["--out", "r"], "--data is required"),
    (["--data", "d", "--out", "r", "--fmt", "json"], "fmt"),
    (["--data", "d", "--out", "r", "--batch-size", "0"], "batch_size"),
    (["--data", "d", "--out", "r", "--cache-vision-features"], "--freeze-vision"),
])
def test_bad_config_is_rejected_with_the_reason(argv, message):
    with pytest.raises(TrainConfigError, match=message):
        _parse(argv)


@pytest.mark.parametrize("field, spec, message", [
    ("sample", "google_apps", "dataset=fraction"), ("sample", "google_apps=2", r"\(0, 1\]"),
    ("sample", "google_apps=x", "must be a number"), ("task_weight", "click-test", "name=weight"),
    ("task_weight", "click-test=0", "> 0"), ("task_weight", "click-test=inf", "finite"),
    ("task_weight", "click-test=x", "must be a number")])
def test_bad_mix_spec_message_reaches_the_user(field, spec, message, capsys):
    with pytest.raises(TrainConfigError, match=message):
        TrainConfig(data=("d",), out="r", **{field: spec})
    with pytest.raises(SystemExit):
        _parse(["--data", "d", "--out", "r", "--" + field.replace("_", "-"), spec])
    assert re.search(message, capsys.readouterr().err)


def test_resume_uses_the_saved_config_and_explicit_overrides(tmp_path):
    TrainConfig(data=("d",), out=str(tmp_path), steps=10, batch_size=3).save(tmp_path)
    cfg = _parse(["--resume", str(tmp_path), "--steps", "20"])
    assert (cfg.steps, cfg.batch_size, cfg.data, cfg.out) == (20, 3, ("d",), str(tmp_path))
    with pytest.raises(TrainConfigError, match="not found"):
        _parse(["--resume", str(tmp_path / "nope")])


def test_warmup_cosine_schedule():
    assert [warmup_cosine(s, 4, 14) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_cosine(9, 4, 14) == pytest.approx(0.5)  # half way through the decay
    assert warmup_cosine(14, 4, 14, min_ratio=0.1) == pytest.approx(0.1)
    assert warmup_cosine(99, 4, 14) == pytest.approx(0.0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = make_scheduler(opt, 2, 10)
    lrs = []
    for _ in range(4):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[:2] == [1.0, 2.0] and lrs[2] == pytest.approx(2.0) and lrs[3] == pytest.approx(2 * 0.5 * (1 + math.cos(math.pi / 8)))


@pytest.fixture(scope="module")
def tiny() -> AutoUIModel:
    torch.manual_seed(0)
    return AutoUIModel(load_preset("tiny").with_tokenizer(ActionTokenizer.load())).eval()


def _batch(model: AutoUIModel, n: int = 3):
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(n, 3, model.config.image_size, model.config.image_size, generator=g)
    text = torch.randint(10, 200, (n, 6), generator=g)
    img = torch.full((n, model.config.num_image_tokens), model.config.image_token_id)
    ids = torch.cat([text[:, :1], img, text], dim=1)
    labels = ids.clone()
    labels[:, : 1 + img.shape[1]] = -100
    return pixels, ids, labels


def test_cached_vision_gives_the_plain_loss_and_hits(tiny, tmp_path):
    pixels, ids, labels = _batch(tiny)
    _, plain = tiny(pixels, ids, labels=labels)
    fp = tower_fingerprint(tiny.vision, "tiny")
    cache = FeatureCache(max_items=10, disk_dir=tmp_path, fingerprint=fp)
    keys = [("ep", i) for i in range(3)]
    for expected_misses in (3, 3):  # second pass: all hits, misses unchanged
        with cached_vision(tiny, cache, keys):
            _, loss = tiny(pixels, ids, labels=labels)
        assert torch.allclose(loss, plain, atol=1e-6)
        assert cache.misses == expected_misses
    assert cache.hits == 3
    assert type(tiny.vision).__name__ == "VisionEncoder"  # the real tower is back
    # a fresh in-memory cache reads the disk copy: no recomputation
    again = FeatureCache(max_items=10, disk_dir=tmp_path, fingerprint=fp)
    assert torch.equal(again.get(("ep", 1)), cache.get(("ep", 1)))
    assert len(list((tmp_path / fp).rglob("*.pt"))) == 3


def test_feature_cache_lru_and_fingerprint(tiny):
    cache = FeatureCache(max_items=2)
    for i in range(3):
        cache.put(("e", i), torch.full((2, 2), float(i)))
    assert cache.get(("e", 0)) is None and len(cache) == 2
    fp = tower_fingerprint(tiny.vision, "x")
    assert fp == tower_fingerprint(tiny.vision, "x") != tower_fingerprint(tiny.vision, "y")
    other = AutoUIModel(load_preset("tiny").with_tokenizer(ActionTokenizer.load()))
    assert tower_fingerprint(other.vision, "x") != fp  # other weights, other cache folder
    with pytest.raises(ValueError, match="fingerprint"):
        FeatureCache(disk_dir="/tmp/x")


def test_parameters_no_forward_uses_are_frozen():
    from autoui.train.setup import freeze_unused_parameters

    model = AutoUIModel(load_preset("tiny").with_tokenizer(ActionTokenizer.load()))
    # feature_layer -1 reads the last encoder layer *before* post_layernorm
    assert freeze_unused_parameters(model) == ["vision.post_layernorm.weight", "vision.post_layernorm.bias"]
    assert not model.vision.post_layernorm.weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert model.decoder.embed_tokens.weight.requires_grad


def test_init_from_a_half_precision_model_trains_in_float32(tiny, tmp_path):
    # the shipped model is saved in fp16; --init from it must not train fp16 weights
    from autoui.train.config import TrainConfig
    from autoui.train.setup import build_model

    tok = ActionTokenizer.load()
    half = AutoUIModel(tiny.config)
    half.load_state_dict(tiny.state_dict())
    half.half().save_pretrained(tmp_path, tokenizer=tok)
    model = build_model(TrainConfig(data=["x"], out=str(tmp_path / "run"), init=str(tmp_path)), tok, tmp_path)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    pixels, ids, labels = _batch(model)
    _, loss = model(pixels, ids, labels=labels)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_training_prompts_keep_the_configured_history():
    # --history 12 must reach the prompt: the default PromptLimits keeps only 8
    from autoui.actions import Action
    from autoui.model.prompt import prompt_text, text_ids
    from autoui.train.config import TrainConfig
    from autoui.train.setup import make_builder, prompt_limits

    tok = ActionTokenizer.load()
    cfg = TrainConfig(data=["x"], out="unused", history=12)
    builder = make_builder(cfg, tok, load_preset("tiny").with_tokenizer(tok))
    assert builder.limits == prompt_limits(cfg) and builder.limits.max_history == 12
    history = [Action.tap(0.1 * (i % 9) + 0.05, 0.5) for i in range(12)]
    kept = text_ids(tok, "g", history, "compact", builder.limits)
    assert kept == tok.encode(prompt_text("g", history, "compact"))  # all 12, nothing cut
    assert kept != text_ids(tok, "g", history[-8:], "compact", builder.limits)
