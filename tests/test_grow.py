"""autoui.model.grow.grow_depth and train/grow_model.py: a deeper model that starts out computing the same."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from autoui.model.config import load_preset
from autoui.model.grow import grow_depth
from autoui.model.vlm import AutoUIModel
from autoui.runtime.engine import Engine, EngineConfig, Request
from tests.test_runtime_engine import _model as varied_model  # tiny weights scaled up: varied greedy outputs
from tests.test_runtime_engine import _requests as requests


def _model(cfg=None) -> AutoUIModel:
    return varied_model(cfg or load_preset("tiny"))


def _inputs(cfg):
    """One prompt (9 text tokens) and its screenshot, batched: pixel_values [1, 3, S, S], input_ids [1, T]."""
    ids, px = requests(cfg, [9], seed=3)[0]
    return px[None], torch.tensor([ids])


def test_grown_model_computes_what_the_original_did():
    model = _model()
    px, ids = _inputs(model.config)
    with torch.no_grad():
        before = model(px, ids)[0]
        ref = model.generate_greedy(px, ids, max_new_tokens=8, eos_token_id=-1)
    n_dec, n_vis = model.config.decoder.num_layers, model.config.vision.num_layers
    grow_depth(model, decoder_layers=2, vision_layers=1)
    assert model.config.decoder.num_layers == n_dec + 2 == len(model.decoder.layers)
    assert model.config.vision.num_layers == n_vis + 1 == len(model.vision.encoder.layers)
    assert [layer.self_attn.layer_idx for layer in model.decoder.layers] == list(range(n_dec + 2))
    with torch.no_grad():
        after = model(px, ids)[0]
        assert torch.allclose(after, before, atol=1e-5)
        assert torch.equal(model.generate_greedy(px, ids, max_new_tokens=8, eos_token_id=-1), ref)
    # the runtime's KV cache gets a slot for each new layer and decodes the same tokens
    engine = Engine(model, EngineConfig(max_batch=1, max_seq_len=96, max_new_tokens=8, prefill_dtype="same"))
    req = Request(ids[0].tolist(), px[0])
    engine.submit(req)
    while engine.active or engine.waiting:
        engine.step()
    assert req.tokens == ref[0].tolist()[:len(req.tokens)] and len(req.tokens) >= 1


def test_new_layers_start_silent_and_learn():
    model = _model()
    grow_depth(model, decoder_layers=1, vision_layers=1)
    new_dec, new_vis = model.decoder.layers[-1], model.vision.encoder.layers[-1]
    silent = [new_dec.self_attn.o_proj.weight, new_dec.mlp.down_proj.weight,
              new_vis.self_attn.out_proj.weight, new_vis.mlp.fc2.weight]
    assert all(float(p.detach().abs().max()) == 0 for p in silent)
    old_last = model.decoder.layers[-2]
    assert torch.equal(new_dec.self_attn.q_proj.weight, old_last.self_attn.q_proj.weight)
    assert new_dec.self_attn.q_proj.weight.data_ptr() != old_last.self_attn.q_proj.weight.data_ptr()  # a copy
    model.train()
    px, ids = _inputs(model.config)
    logits = model(px, ids)[0]
    logits.float().pow(2).mean().backward()
    assert all(p.grad is not None and float(p.grad.abs().max()) > 0 for p in silent)


def test_grow_refuses_bad_counts_and_unused_vision_layers():
    model = _model()
    with pytest.raises(ValueError, match=">= 0"):
        grow_depth(model, decoder_layers=-1)
    penultimate = _model(dataclasses.replace(load_preset("tiny"), feature_layer=-2))
    with pytest.raises(ValueError, match="never be used"):
        grow_depth(penultimate, vision_layers=1)
    grow_depth(penultimate, decoder_layers=1)  # the decoder can still grow
    n = load_preset("tiny").vision.num_layers  # the last layer named from the front follows the growth
    counted = _model(dataclasses.replace(load_preset("tiny"), feature_layer=n))
    grow_depth(counted, vision_layers=2)
    assert counted.config.feature_layer == n + 2 == counted.config.num_vision_layers_used


def test_grow_model_script_writes_a_loadable_deeper_model(tmp_path, capsys, train_script, tiny_model_dir):
    src, script = tiny_model_dir, train_script("grow_model.py")
    assert script.main([str(src), "--decoder-layers", "2", "--vision-layers", "2", "--out", str(tmp_path / "g")]) == 0
    n_dec, n_vis = load_preset("tiny").decoder.num_layers, load_preset("tiny").vision.num_layers
    assert f"decoder {n_dec} -> {n_dec + 2} layers, vision {n_vis} -> {n_vis + 2} layers" in capsys.readouterr().out
    grown, orig = AutoUIModel.from_pretrained(tmp_path / "g"), AutoUIModel.from_pretrained(src)
    assert (grown.config.decoder.num_layers, grown.config.vision.num_layers) == (n_dec + 2, n_vis + 2)
    assert json.loads((tmp_path / "g" / "screen.json").read_text())["view"] == "area"
    px, ids = _inputs(orig.config)
    assert torch.equal(grown.generate_greedy(px, ids, max_new_tokens=4), orig.generate_greedy(px, ids, max_new_tokens=4))
    with pytest.raises(SystemExit, match=">= 0"):
        script.main([str(src), "--decoder-layers", "-1", "--out", str(tmp_path / "bad")])
