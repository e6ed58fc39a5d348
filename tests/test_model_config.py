"""Model configs: validation with clear errors, JSON round trips, presets, tokenizer ids."""
from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest

from autoui.model import ConfigError, DecoderConfig, ModelConfig, VisionConfig, list_presets, load_preset


@pytest.mark.parametrize("name", ["tiny", "default", "siglip-base-qwen2-0.5b", "clip-l336-tinyllama-1.1b"])
def test_presets_load_and_round_trip(name):
    cfg = load_preset(name)
    assert cfg.preset == name
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    assert name in list_presets()


def test_preset_by_path_and_unknown(tmp_path):
    cfg = load_preset("tiny")
    path = cfg.save(tmp_path / "mine.json")
    assert load_preset(path) == cfg
    with pytest.raises(ConfigError, match="unknown model preset 'nope'"):
        load_preset("nope")


def test_tiny_preset_shapes():
    cfg = load_preset("tiny")
    assert (cfg.image_size, cfg.vision.patch_size, cfg.num_image_tokens) == (32, 8, 16)


@pytest.mark.parametrize("make,match", [
    (lambda: VisionConfig(image_size=30, patch_size=8), "multiple of patch_size"),
    (lambda: VisionConfig(hidden_size=30, num_heads=4), "must divide hidden_size"),
    (lambda: VisionConfig(variant="vit"), "variant must be one of"),
    (lambda: DecoderConfig(num_heads=6, num_kv_heads=4), "num_kv_heads 4 must divide num_heads 6"),
    (lambda: DecoderConfig(hidden_size=100, num_heads=6), "must divide hidden_size"),
    (lambda: DecoderConfig(num_layers=0), "num_layers must be a positive int"),
    (lambda: ModelConfig(image_token_id=5000), "image_token_id must be an id in 0..2047"),
    (lambda: ModelConfig(image_token_id=2), "must differ from \\['eos_token_id'\\]"),
    (lambda: ModelConfig(feature_select="default"), "only the clip variant"),
    (lambda: ModelConfig(feature_layer=-8), "feature_layer must index the 7 vision hidden states"),
    (lambda: ModelConfig(image_std=(0.5, 0.5)), "image_std needs 3 values"),
])
def test_validation_errors(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_unknown_keys_and_bad_json_are_refused():
    data = load_preset("tiny").to_dict()
    data["decoder"]["num_layer"] = 3
    with pytest.raises(ConfigError, match="unknown keys \\['num_layer'\\]"):
        ModelConfig.from_dict(data)
    with pytest.raises(ConfigError, match="not valid JSON"):
        ModelConfig.from_json("{")


def test_with_tokenizer_and_derived_values():
    cfg = load_preset("tiny")
    tok = SimpleNamespace(vocab_size=3000, pad_id=0, bos_id=1, eos_id=2, image_token_id=4)
    mine = cfg.with_tokenizer(tok)
    assert mine.decoder.vocab_size == 3000 and mine.image_token_id == 4
    clip = dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, variant="clip"))
    assert clip.num_image_tokens == 17  # the class token is kept with "full"
    assert dataclasses.replace(clip, feature_select="default").num_image_tokens == 16
    assert dataclasses.replace(cfg, feature_layer=-2).num_vision_layers_used == 1
    assert json.loads(cfg.to_json())["image_mean"] == [0.5, 0.5, 0.5]
