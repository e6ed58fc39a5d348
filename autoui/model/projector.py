"""The projector from vision width to decoder width, laid out like HF's `LlavaMultiModalProjector`.

Two linear layers with an exact GELU between them (`projector_hidden_act="gelu"` in a Llava
config), so exported weights map one to one (`multi_modal_projector.linear_1/linear_2`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Projector(nn.Module):
    """linear_1 -> GELU -> linear_2, mapping vision tokens into the decoder's embedding space."""

    def __init__(self, vision_dim: int, text_dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(vision_dim, text_dim)
        self.linear_2 = nn.Linear(text_dim, text_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # [B, N, Dv] -> [B, N, Dt]
        return self.linear_2(F.gelu(self.linear_1(features)))
