"""HF transformers interop: config mapping both ways, and export to `LlavaForConditionalGeneration`.

`export_hf(model_dir, out_dir)` turns a directory written by `AutoUIModel.save_pretrained`
into a Llava checkpoint (config.json, model.safetensors, generation_config.json, the
tokenizer files, and processor configs) that `LlavaForConditionalGeneration.from_pretrained`
reads offline and vLLM can serve. The vision tower becomes `siglip_vision_model` or
`clip_vision_model`, the decoder `llama` (or `qwen2` when it has q/k/v bias). Tensors are
renamed, never recomputed, so both models compute the same function.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file

from autoui.model.config import DecoderConfig, ModelConfig, VisionConfig

log = logging.getLogger("autoui.model.hf_export")

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
# HF defaults for keys a checkpoint's config.json may leave out
_VISION_DEFAULTS = {
    "siglip": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
               "image_size": 224, "patch_size": 16, "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6},
    "clip": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
             "image_size": 224, "patch_size": 32, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5},
}
_VISION_TYPES = {"siglip": "siglip", "siglip_vision_model": "siglip", "clip": "clip", "clip_vision_model": "clip"}


class ExportError(ValueError):
    """A model directory or HF config that cannot be converted (the message says why)."""


def llava_name(name: str) -> str:
    """Our parameter name -> its name in an HF `LlavaForConditionalGeneration` state dict."""
    for ours, theirs in (("vision.", "model.vision_tower.vision_model."),
                         ("projector.", "model.multi_modal_projector."),
                         ("decoder.", "model.language_model.")):
        if name.startswith(ours):
            return theirs + name[len(ours):]
    if name == "lm_head.weight":
        return name
    raise ExportError(f"no Llava name for parameter {name!r}")


def vision_config_to_hf(v: VisionConfig) -> dict[str, Any]:
    """Our `VisionConfig` -> an HF `SiglipVisionConfig` / `CLIPVisionConfig` dict."""
    d = {"hidden_size": v.hidden_size, "intermediate_size": v.intermediate_size, "num_hidden_layers": v.num_layers,
         "num_attention_heads": v.num_heads, "num_channels": v.num_channels, "image_size": v.image_size,
         "patch_size": v.patch_size, "hidden_act": v.hidden_act, "layer_norm_eps": v.layer_norm_eps,
         "attention_dropout": 0.0}
    if v.variant == "siglip":
        # Llava never uses SigLIP's pooling head; leaving it out keeps every exported tensor used
        return {"model_type": "siglip_vision_model", **d, "vision_use_head": False}
    return {"model_type": "clip_vision_model", **d, "projection_dim": v.hidden_size}


def vision_config_from_hf(d: dict[str, Any]) -> VisionConfig:
    """An HF SigLIP/CLIP (vision or full) or Llava config dict -> our `VisionConfig`."""
    outer = d.get("model_type")
    if outer in ("llava", "siglip", "clip"):
        # a sub-config may omit its model_type; Llava's default tower is CLIP
        d = {"model_type": "siglip_vision_model" if outer == "siglip" else "clip_vision_model",
             **(d.get("vision_config") or {})}
    variant = _VISION_TYPES.get(d.get("model_type", ""))
    if variant is None:
        raise ExportError(f"not a SigLIP/CLIP vision config: model_type {d.get('model_type')!r}")
    g = {**_VISION_DEFAULTS[variant], **d}
    return VisionConfig(variant=variant, image_size=g["image_size"], patch_size=g["patch_size"],
                        hidden_size=g["hidden_size"], num_layers=g["num_hidden_layers"],
                        num_heads=g["num_attention_heads"], intermediate_size=g["intermediate_size"],
                        layer_norm_eps=g["layer_norm_eps"], hidden_act=g["hidden_act"],
                        num_channels=g.get("num_channels", 3))


def decoder_config_to_hf(c: DecoderConfig, cfg: ModelConfig) -> dict[str, Any]:
    """Our `DecoderConfig` -> an HF `LlamaConfig` (no bias) or `Qwen2Config` (q/k/v bias) dict."""
    d = {"model_type": "qwen2" if c.qkv_bias else "llama", "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
         "intermediate_size": c.intermediate_size, "num_hidden_layers": c.num_layers,
         "num_attention_heads": c.num_heads, "num_key_value_heads": c.num_kv_heads, "head_dim": c.resolved_head_dim,
         "hidden_act": "silu", "rms_norm_eps": c.rms_norm_eps, "max_position_embeddings": c.max_position_embeddings,
         "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta}, "rope_theta": c.rope_theta,
         "tie_word_embeddings": c.tie_word_embeddings, "attention_dropout": 0.0,
         "pad_token_id": cfg.pad_token_id, "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id}
    if c.qkv_bias:
        return {**d, "use_sliding_window": False, "sliding_window": None}
    return {**d, "attention_bias": False, "mlp_bias": False}


def decoder_config_from_hf(d: dict[str, Any]) -> DecoderConfig:
    """An HF Llama/Qwen2 (or Llava) config dict -> our `DecoderConfig`; unsupported features raise."""
    if d.get("model_type") == "llava":
        d = {"model_type": "llama", **(d.get("text_config") or {})}
    kind = d.get("model_type")
    if kind not in ("llama", "qwen2"):
        raise ExportError(f"not a Llama/Qwen2 config: model_type {kind!r}")
    rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ExportError(f"RoPE scaling {rope} is not supported (only the default rotary embedding)")
    unsupported = [k for k in ("attention_bias", "mlp_bias") if kind == "llama" and d.get(k)]
    if d.get("hidden_act", "silu") != "silu" or unsupported:
        raise ExportError(f"unsupported decoder features: hidden_act={d.get('hidden_act')!r} {unsupported}")
    heads = d.get("num_attention_heads", 32)
    head_dim = d.get("head_dim")
    if head_dim == d["hidden_size"] // heads:
        head_dim = None  # the default spelled out: keep our configs canonical
    return DecoderConfig(vocab_size=d["vocab_size"], hidden_size=d["hidden_size"],
                         num_layers=d["num_hidden_layers"], num_heads=heads,
                         num_kv_heads=d.get("num_key_value_heads") or heads,
                         intermediate_size=d["intermediate_size"], head_dim=head_dim,
                         rms_norm_eps=d.get("rms_norm_eps", 1e-6),
                         rope_theta=float(rope.get("rope_theta", d.get("rope_theta", 10000.0))),
                         max_position_embeddings=d.get("max_position_embeddings", 2048),
                         qkv_bias=kind == "qwen2", tie_word_embeddings=bool(d.get("tie_word_embeddings", False)))


def llava_config(cfg: ModelConfig) -> dict[str, Any]:
    """The `LlavaConfig` dict equivalent to `cfg`."""
    return {"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava",
            "vision_config": vision_config_to_hf(cfg.vision), "text_config": decoder_config_to_hf(cfg.decoder, cfg),
            "image_token_index": cfg.image_token_id, "image_seq_length": cfg.num_image_tokens,
            "projector_hidden_act": "gelu", "multimodal_projector_bias": True,
            "vision_feature_layer": cfg.feature_layer, "vision_feature_select_strategy": cfg.feature_select,
            "tie_word_embeddings": cfg.decoder.tie_word_embeddings, "pad_token_id": cfg.pad_token_id}


def _processor_configs(cfg: ModelConfig) -> dict[str, dict[str, Any]]:
    """Image-processor and processor configs so `AutoProcessor` (and vLLM) expand `<image>` correctly.

    The image processor only resizes to a square; feed it screenshots already padded to a
    square (as `autoui.model.preprocess` does) to see what the model was trained on.
    """
    size = cfg.vision.image_size
    kind = "SiglipImageProcessor" if cfg.vision.variant == "siglip" else "CLIPImageProcessor"
    image = {"image_processor_type": kind, "do_resize": True, "size": {"height": size, "width": size},
             "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
             "image_mean": list(cfg.image_mean), "image_std": list(cfg.image_std), "do_convert_rgb": True}
    if kind == "CLIPImageProcessor":
        image.update({"size": {"shortest_edge": size}, "do_center_crop": True, "crop_size": {"height": size, "width": size}})
    processor = {"processor_class": "LlavaProcessor", "patch_size": cfg.vision.patch_size,
                 "vision_feature_select_strategy": cfg.feature_select, "image_token": "<image>",
                 "num_additional_image_tokens": 1 if cfg.vision.variant == "clip" else 0}
    return {"preprocessor_config.json": image, "processor_config.json": processor}


def export_hf(model_dir: str | Path, out_dir: str | Path) -> Path:
    """Write an HF Llava checkpoint for the autoui model in `model_dir` to `out_dir`; returns `out_dir`."""
    from autoui.model.weights import CONFIG_FILE, WEIGHTS_FILE

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise ExportError(f"{model_dir} is not an autoui model directory (no {WEIGHTS_FILE})")
    if out_dir.resolve() == model_dir.resolve():
        raise ExportError("out_dir must differ from model_dir (the files would overwrite each other)")
    cfg = ModelConfig.load(model_dir / CONFIG_FILE)
    with safe_open(str(weights), framework="pt") as fh:
        state = {llava_name(k): fh.get_tensor(k).contiguous() for k in fh.keys()}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    dtype = str(next(iter(state.values())).dtype).removeprefix("torch.")
    files = {"config.json": {**llava_config(cfg), "dtype": dtype},
             "generation_config.json": {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id,
                                        "pad_token_id": cfg.pad_token_id, "do_sample": False},
             **_processor_configs(cfg)}
    for name, data in files.items():
        (out_dir / name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    copied = [n for n in TOKENIZER_FILES if (model_dir / n).is_file()]
    for name in copied:
        shutil.copyfile(model_dir / name, out_dir / name)
    if "tokenizer.json" not in copied:
        log.warning("%s has no tokenizer.json: the export has no tokenizer (save the model with tokenizer=...)", model_dir)
    log.info("exported %s (%d tensors) to %s", model_dir, len(state), out_dir)
    return out_dir
