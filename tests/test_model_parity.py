"""Parity of our vision tower and decoder with HF transformers on the same (random) weights.

HF models are built tiny and random, written with `save_pretrained` to a temp dir, and
read back through our `load_vision_from_hf` / `load_decoder_from_hf`, so these tests also
cover loading local HF checkpoints. fp32 on CPU; tolerance 1e-4 max abs diff.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from autoui.model import AutoUIModel, ModelConfig, WeightsError, load_decoder_from_hf, load_vision_from_hf  # noqa: E402
from autoui.model.hf_export import decoder_config_from_hf, vision_config_from_hf  # noqa: E402

TOL = 1e-4
VISION_KW = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 image_size=32, patch_size=8)



def _model_for(vision=None, decoder=None, **kw) -> AutoUIModel:
    base = ModelConfig()
    cfg = dataclasses.replace(base, vision=vision or base.vision, decoder=decoder or base.decoder, **kw)
    return AutoUIModel(cfg)


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory):
    torch.manual_seed(0)
    hf = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(**VISION_KW)).eval()
    d = tmp_path_factory.mktemp("siglip")
    hf.save_pretrained(d)
    return d, hf


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    torch.manual_seed(1)
    hf = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**VISION_KW)).eval()
    d = tmp_path_factory.mktemp("clip")
    hf.save_pretrained(d)
    return d, hf


@pytest.mark.parametrize("which", ["siglip_dir", "clip_dir"])
def test_vision_matches_hf(which, request):
    d, hf = request.getfixturevalue(which)
    vcfg = vision_config_from_hf(json.loads((d / "config.json").read_text()))
    model = _model_for(vision=vcfg).eval()
    load_vision_from_hf(model, d)
    px = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = hf(pixel_values=px, output_hidden_states=True)
        ours_last = model.vision.last_hidden_state(px)
        ours_l1 = model.vision(px, num_layers=1)
    assert (ours_last - ref.last_hidden_state).abs().max() < TOL
    assert (ours_l1 - ref.hidden_states[1]).abs().max() < TOL


DECODER_KW = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6)


def _hf_decoder(kind: str, tie: bool, tmp_path):
    torch.manual_seed(2)
    if kind == "llama":
        cfg = transformers.LlamaConfig(**DECODER_KW, tie_word_embeddings=tie,
                                       rope_parameters={"rope_type": "default", "rope_theta": 5000.0})
        hf = transformers.LlamaForCausalLM(cfg)
    else:
        cfg = transformers.Qwen2Config(**DECODER_KW, tie_word_embeddings=tie)
        hf = transformers.Qwen2ForCausalLM(cfg)
    hf.eval()
    hf.save_pretrained(tmp_path)
    return hf


@pytest.mark.parametrize("kind,tie", [("llama", False), ("llama", True), ("qwen2", True), ("qwen2", False)])
def test_decoder_matches_hf(kind, tie, tmp_path):
    hf = _hf_decoder(kind, tie, tmp_path)
    dcfg = decoder_config_from_hf(json.loads((tmp_path / "config.json").read_text()))
    assert dcfg.qkv_bias == (kind == "qwen2") and dcfg.tie_word_embeddings == tie and dcfg.num_kv_heads == 2
    model = _model_for(decoder=dcfg).eval()
    load_decoder_from_hf(model, tmp_path)
    ids = torch.randint(5, 96, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # row 1 is left-padded
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        hidden = model.decoder(model.decoder.embed_tokens(ids), pos, mask)
        ours = model.logits(hidden)
    real = mask.bool()
    assert (ours[real] - ref[real]).abs().max() < TOL


def test_vision_mismatch_lists_names_and_shapes(siglip_dir):
    d, _ = siglip_dir
    vcfg = dataclasses.replace(vision_config_from_hf(json.loads((d / "config.json").read_text())), intermediate_size=48)
    model = _model_for(vision=vcfg)
    with pytest.raises(WeightsError, match="intermediate_size"):
        load_vision_from_hf(model, d)  # the config.json check names the differing field
    (d2 := d.parent / "noconfig").mkdir()
    (d2 / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes())
    with pytest.raises(WeightsError) as err:
        load_vision_from_hf(model, d2)  # without config.json the tensor shapes catch it
    msg = str(err.value)
    assert "shape mismatch" in msg and "encoder.layers.0.mlp.fc1.weight: expected (48, 32), found (64, 32)" in msg


def test_decoder_missing_and_unexpected_names(tmp_path):
    from safetensors.torch import load_file, save_file

    hf = _hf_decoder("llama", False, tmp_path)
    dcfg = decoder_config_from_hf(json.loads((tmp_path / "config.json").read_text()))
    state = load_file(str(tmp_path / "model.safetensors"))
    state["model.layers.0.self_attn.extra.weight"] = state.pop("model.layers.0.self_attn.q_proj.weight")
    bad = tmp_path / "bad"
    bad.mkdir()
    save_file(state, str(bad / "model.safetensors"))
    with pytest.raises(WeightsError) as err:
        load_decoder_from_hf(_model_for(decoder=dcfg), bad)
    msg = str(err.value)
    assert "missing 1: ['layers.0.self_attn.q_proj.weight']" in msg
    assert "unexpected 1: ['layers.0.self_attn.extra.weight']" in msg
    tied = _model_for(decoder=dataclasses.replace(dcfg, tie_word_embeddings=True))
    with pytest.raises(WeightsError, match="tie_word_embeddings"):
        load_decoder_from_hf(tied, tmp_path)
    del hf


def test_sharded_checkpoint_and_meta_build(tmp_path):
    """A sharded checkpoint (index json) loads into a model built on `meta` via model_from_hf."""
    from autoui.model import model_from_hf

    hf = _hf_decoder("qwen2", True, tmp_path / "full")
    sharded = tmp_path / "sharded"
    hf.save_pretrained(sharded, max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    dcfg = decoder_config_from_hf(json.loads((sharded / "config.json").read_text()))
    cfg = dataclasses.replace(ModelConfig(), decoder=dcfg)
    model = model_from_hf(cfg, vision_dir=None, decoder_dir=sharded)
    assert not any(p.is_meta for p in model.parameters())
    ids = torch.randint(5, 96, (1, 9))
    with torch.no_grad():
        ref = hf(input_ids=ids).logits
        ours = model.logits(model.decoder(model.decoder.embed_tokens(ids)))
    assert (ours - ref).abs().max() < TOL


def test_grow_vocab_keeps_rows(tmp_path):
    hf = _hf_decoder("llama", True, tmp_path)
    dcfg = dataclasses.replace(decoder_config_from_hf(json.loads((tmp_path / "config.json").read_text())), vocab_size=100)
    model = _model_for(decoder=dcfg)
    with pytest.raises(WeightsError, match="embed_tokens.weight: expected \\(100, 64\\), found \\(96, 64\\)"):
        load_decoder_from_hf(model, tmp_path)
    load_decoder_from_hf(model, tmp_path, grow_vocab=True)
    emb = model.decoder.embed_tokens.weight
    assert torch.equal(emb[:96], hf.model.embed_tokens.weight)
    assert torch.allclose(emb[96], hf.model.embed_tokens.weight.mean(0))
