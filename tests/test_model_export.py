"""Export to HF `LlavaForConditionalGeneration`: same logits and same greedy tokens as ours.

Two layouts: SigLIP + Llama (tied lm_head, last layer, all tokens) and CLIP + Qwen2
(untied, vision_feature_layer=-2, class token dropped). Also the `autoui export-hf` CLI.
"""
from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from autoui.cli import main as cli_main  # noqa: E402
from autoui.model import AutoUIModel, DecoderConfig, ExportError, ModelConfig, VisionConfig, export_hf  # noqa: E402
from autoui.model.tokenizer import ActionTokenizer  # noqa: E402

TOL = 1e-4
LAYOUTS = {
    "siglip-llama": dict(
        vision=VisionConfig(variant="siglip", image_size=32, patch_size=8, hidden_size=32, num_layers=2,
                            num_heads=2, intermediate_size=64),
        decoder=DecoderConfig(vocab_size=300, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                              intermediate_size=128, tie_word_embeddings=True),
        feature_layer=-1, feature_select="full"),
    "clip-qwen2": dict(
        vision=VisionConfig(variant="clip", image_size=32, patch_size=8, hidden_size=32, num_layers=3,
                            num_heads=2, intermediate_size=64, layer_norm_eps=1e-5, hidden_act="quick_gelu"),
        decoder=DecoderConfig(vocab_size=300, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=1,
                              intermediate_size=128, qkv_bias=True, tie_word_embeddings=False, rope_theta=1e6),
        feature_layer=-2, feature_select="default", image_mean=(0.48, 0.46, 0.41), image_std=(0.27, 0.26, 0.28)),
}



@pytest.fixture(scope="module")
def tokenizer():
    corpus = ["tap 219 502", "swipe 800 500 200 500", "type hello world", "back", "home", "enter", "done"] * 20
    return ActionTokenizer.build(corpus, vocab_size=300)


def _export(layout: str, tokenizer, tmp_path):
    torch.manual_seed(3)
    cfg = ModelConfig(preset=layout, **LAYOUTS[layout]).with_tokenizer(tokenizer)
    model = AutoUIModel(cfg).eval()
    # random init keeps biases at 0: make them non-zero so the mapping of every tensor is tested
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    model.save_pretrained(tmp_path / "ours", tokenizer=tokenizer)
    export_hf(tmp_path / "ours", tmp_path / "hf")
    hf = transformers.LlavaForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    return model, hf


def _batch(cfg: ModelConfig, tokenizer):
    """Two left-padded prompts: bos, image tokens, text."""
    rows = [tokenizer.encode("goal: open settings"), tokenizer.encode("go")]
    seqs = [[cfg.bos_token_id] + [cfg.image_token_id] * cfg.num_image_tokens + r for r in rows]
    t = max(len(s) for s in seqs)
    ids = torch.tensor([[cfg.pad_token_id] * (t - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (t - len(s)) + [1] * len(s) for s in seqs])
    return ids, mask, torch.randn(2, 3, cfg.image_size, cfg.image_size)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_export_same_logits_and_tokens(layout, tokenizer, tmp_path):
    model, hf = _export(layout, tokenizer, tmp_path)
    cfg = model.config
    hcfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hcfg["text_config"]["model_type"] == ("qwen2" if cfg.decoder.qkv_bias else "llama")
    assert hcfg["vision_config"]["model_type"] == f"{cfg.vision.variant}_vision_model"
    ids, mask, px = _batch(cfg, tokenizer)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ours, _ = model(px, ids, mask)
        ref = hf(input_ids=ids, pixel_values=px, attention_mask=mask, position_ids=pos).logits
    real = mask.bool()
    assert (ours[real] - ref[real]).abs().max() < TOL
    new = model.generate_greedy(px, ids, mask, max_new_tokens=8)
    gen = hf.generate(input_ids=ids, pixel_values=px, attention_mask=mask, max_new_tokens=8, do_sample=False,
                      eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id)
    assert torch.equal(gen[:, ids.shape[1]:], new)


def test_export_files_and_tokenizer(tokenizer, tmp_path):
    _export("siglip-llama", tokenizer, tmp_path)
    out = tmp_path / "hf"
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json", "preprocessor_config.json", "processor_config.json"):
        assert (out / name).is_file(), name
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"))
    assert hf_tok.encode("tap 219 502") == tokenizer.encode("tap 219 502")
    # the processor configs make AutoProcessor (what vLLM uses) expand "<image>" to the right count
    processor = transformers.AutoProcessor.from_pretrained(out)
    from PIL import Image

    enc = processor(images=Image.new("RGB", (40, 40), (200, 10, 10)), text="<image>tap", return_tensors="pt")
    assert enc["pixel_values"].shape == (1, 3, 32, 32)
    assert enc["input_ids"][0].tolist().count(tokenizer.image_token_id) == 16
    with pytest.raises(ExportError, match="not an autoui model directory"):
        export_hf(tmp_path, tmp_path / "x")


def test_cli_export_hf(tokenizer, tmp_path, capsys):
    torch.manual_seed(0)
    cfg = ModelConfig(**LAYOUTS["siglip-llama"]).with_tokenizer(tokenizer)
    AutoUIModel(cfg).save_pretrained(tmp_path / "m", tokenizer=tokenizer)
    assert cli_main(["export-hf", str(tmp_path / "m"), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert cli_main(["export-hf", str(tmp_path / "missing"), str(tmp_path / "out2")]) == 2
    assert "export-hf: error:" in capsys.readouterr().err
