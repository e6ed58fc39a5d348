"""Deepen a trained model without changing what it computes (block expansion, as in LLaMA Pro).

`grow_depth(model, decoder_layers=2, vision_layers=2)` appends layers to the decoder and to
the vision tower. Each new layer starts as a copy of the tower's last layer with its residual
outputs zeroed (the decoder's `o_proj` and `down_proj`, the vision layer's `out_proj` and
`fc2`, weights and biases), so it adds nothing to the residual stream: the grown model's
logits equal the old one's until training moves those projections off zero. Layers are
appended, never interleaved, so layer indices other flags name (the grounding and goal-word
layers) keep pointing at the same layers.

Why: the small default model underfits its own training screens (docs/train.md sections 13-16),
and a deeper model started this way keeps everything the shipped one learned.
"""
from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from autoui.model.vlm import AutoUIModel

_ZEROED = ("self_attn.o_proj", "mlp.down_proj", "self_attn.out_proj", "mlp.fc2")
"""Submodules whose output a residual branch adds: zeroed in a new layer."""


def _silent_copy(layer: nn.Module) -> nn.Module:
    """A copy of `layer` whose residual branches output zero (an identity layer that can learn)."""
    new = copy.deepcopy(layer)
    for name, module in new.named_modules():
        if name in _ZEROED:
            for p in module.parameters(recurse=False):
                nn.init.zeros_(p)
    return new


def _append(layers: nn.ModuleList, count: int) -> None:
    for _ in range(count):
        new = _silent_copy(layers[-1])
        attn = getattr(new, "self_attn", None)
        if hasattr(attn, "layer_idx"):  # decoder layers index their KV-cache slot
            attn.layer_idx = len(layers)
        layers.append(new)


@torch.no_grad()
def grow_depth(model: AutoUIModel, decoder_layers: int = 0, vision_layers: int = 0) -> AutoUIModel:
    """`model` (changed in place) with that many more decoder and vision layers; its outputs are unchanged."""
    if decoder_layers < 0 or vision_layers < 0:
        raise ValueError(f"layer counts to add must be >= 0, got {decoder_layers} and {vision_layers}")
    cfg = model.config
    if vision_layers and cfg.num_vision_layers_used != cfg.vision.num_layers:
        raise ValueError(f"the projector reads vision layer {cfg.num_vision_layers_used} of {cfg.vision.num_layers}: "
                         "layers appended after it would never be used")
    _append(model.decoder.layers, decoder_layers)
    _append(model.vision.encoder.layers, vision_layers)
    decoder = dataclasses.replace(cfg.decoder, num_layers=cfg.decoder.num_layers + decoder_layers)
    vision = dataclasses.replace(cfg.vision, num_layers=cfg.vision.num_layers + vision_layers)
    model.decoder.config, model.vision.config = decoder, vision
    # a positive feature_layer counts from the front: point it at the new last layer
    feature_layer = vision.num_layers if cfg.feature_layer >= 0 else cfg.feature_layer
    model.config = dataclasses.replace(cfg, decoder=decoder, vision=vision, feature_layer=feature_layer)
    return model
