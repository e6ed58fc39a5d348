"""The vision encoder: a ViT with HF `SiglipVisionModel` / `CLIPVisionModel` parameter names.

Parameter names match HF's (`embeddings.patch_embedding`, `encoder.layers.N.self_attn.q_proj`,
...) so SigLIP and CLIP vision checkpoints load by stripping a prefix. The CLIP variant
adds `embeddings.class_embedding` and `pre_layrnorm` (HF's spelling) and has no patch bias;
the variant is chosen by `VisionConfig.variant`.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from autoui.model.config import VisionConfig
from autoui.model.layers import activation


def sincos_positions(side: int, dim: int) -> torch.Tensor:
    """2D sine-cosine position table [side * side, dim] for a row-major patch grid (MAE's layout).

    The first half of the channels encodes the row, the second half the column, each with
    sin/cos pairs at geometric frequencies from pi/side (half a turn across the grid) to pi/2
    (a quarter turn per patch). Unlike a text-style 1/10000^(k/n) ladder, every channel then
    varies across a small grid (8 x 8 patches) instead of most of them being ~constant.
    """
    if dim % 4:
        raise ValueError(f"2D sin-cos positions need a hidden size divisible by 4, got {dim}")
    quarter = dim // 4
    steps = torch.arange(quarter, dtype=torch.float64) / max(1, quarter - 1)  # 0 .. 1
    freqs = (math.pi / max(side, 2)) * (max(side, 2) / 2) ** steps  # [D/4], pi/side .. pi/2
    grid = torch.arange(side, dtype=torch.float64)
    rows, cols = torch.meshgrid(grid, grid, indexing="ij")  # [side, side] each

    def encode(coord: torch.Tensor) -> torch.Tensor:
        angles = coord.reshape(-1, 1) * freqs[None]  # [N, D/4]
        return torch.cat([angles.sin(), angles.cos()], dim=1)  # [N, D/2]

    return torch.cat([encode(rows), encode(cols)], dim=1).float()  # [N, D]


class VisionEmbeddings(nn.Module):
    """Patchify with a strided conv, add learned absolute positions (+ CLIP's class token)."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.side = cfg.image_size // cfg.patch_size
        self.is_clip = cfg.variant == "clip"
        self.patch_embedding = nn.Conv2d(cfg.num_channels, cfg.hidden_size, kernel_size=cfg.patch_size,
                                         stride=cfg.patch_size, bias=not self.is_clip)
        if self.is_clip:
            self.class_embedding = nn.Parameter(torch.zeros(cfg.hidden_size))
        self.position_embedding = nn.Embedding(cfg.num_positions, cfg.hidden_size)

    @torch.no_grad()
    def init_positions(self) -> None:
        """Start the (learned) positions from a 2D sin-cos table (class token: zeros).

        Trained from scratch with a small random init, positions stay ~100x smaller than
        the patch embeddings of raw pixels, the encoder output carries almost no "where",
        and a decoder cannot learn to point (measured: taps collapse to one place per task).
        A sin-cos start has the patch embeddings' scale and makes every patch's row and
        column linearly readable from step 0.
        """
        if self.position_embedding.weight.is_meta:
            return
        table = sincos_positions(self.side, self.position_embedding.embedding_dim)
        w = self.position_embedding.weight
        w.zero_()
        w[-table.shape[0]:] = table.to(w.dtype)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))  # [B, D, H/p, W/p]
        x = x.flatten(2).transpose(1, 2)  # [B, N, D]
        if self.is_clip:
            cls = self.class_embedding.expand(x.shape[0], 1, -1)  # [B, 1, D]
            x = torch.cat([cls, x], dim=1)  # [B, N+1, D]
        return x + self.position_embedding.weight[None]  # [B, N(+1), D]


class VisionAttention(nn.Module):
    """Bidirectional multi-head self-attention over patches."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        d = cfg.hidden_size
        self.num_heads = cfg.num_heads
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, D] -> [B, N, D]
        b, n, d = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)  # [B, H, N, Dh]

        out = F.scaled_dot_product_attention(heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x)))
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class VisionMLP(nn.Module):
    """fc1 -> activation -> fc2."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.act = activation(cfg.hidden_act)
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class VisionLayer(nn.Module):
    """Pre-norm transformer block (HF's `SiglipEncoderLayer` / `CLIPEncoderLayer`)."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.self_attn = VisionAttention(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = VisionMLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, D]
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class VisionTransformer(nn.Module):
    """The stack of encoder layers (HF's `encoder`)."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.layers = nn.ModuleList(VisionLayer(cfg) for _ in range(cfg.num_layers))


class VisionEncoder(nn.Module):
    """ViT over a batch of square images -> per-token hidden states.

    `forward(pixel_values, num_layers)` returns hidden state number `num_layers` in HF's
    `hidden_states` numbering (0 = embeddings, L = last layer's output), i.e. *before*
    `post_layernorm`, which is what HF Llava feeds its projector. `post_layernorm` is kept
    so checkpoints load and export whole; `last_hidden_state` mirrors HF's output.
    """

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.config = cfg
        self.embeddings = VisionEmbeddings(cfg)
        if cfg.variant == "clip":
            self.pre_layrnorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.encoder = VisionTransformer(cfg)
        self.post_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor, num_layers: int | None = None) -> torch.Tensor:
        """pixel_values [B, C, S, S] (normalised) -> hidden [B, N, D] after `num_layers` layers (default all)."""
        cfg = self.config
        if pixel_values.dim() != 4 or pixel_values.shape[1:] != (cfg.num_channels, cfg.image_size, cfg.image_size):
            raise ValueError(f"pixel_values must be [B, {cfg.num_channels}, {cfg.image_size}, {cfg.image_size}], "
                             f"got {list(pixel_values.shape)}")
        n = cfg.num_layers if num_layers is None else num_layers
        if not 0 <= n <= cfg.num_layers:
            raise ValueError(f"num_layers must be in 0..{cfg.num_layers}, got {n}")
        x = self.embeddings(pixel_values)  # [B, N, D]
        if cfg.variant == "clip":
            x = self.pre_layrnorm(x)
        for layer in self.encoder.layers[:n]:
            x = layer(x)
        return x  # [B, N, D]

    def last_hidden_state(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """HF's `last_hidden_state`: all layers, then `post_layernorm` for SigLIP (CLIP leaves it out): [B, N, D]."""
        x = self.forward(pixel_values)
        return self.post_layernorm(x) if self.config.variant == "siglip" else x


@torch.no_grad()
def repatch(vision: VisionEncoder, patch_size: int) -> VisionEncoder:
    """A copy of `vision` that cuts the same image into smaller patches (FlexiViT-style resize).

    The patch kernel is average-pooled down to `patch_size` and multiplied by the number of
    small patches per old one, so a flat colour embeds as before; the learned position table is
    interpolated (bicubic) to the finer grid (CLIP's class-token row is kept as is); every other
    weight is copied. The image size stays, so there are (old / new)^2 times more image tokens.
    Why: 28-px tokens are too coarse to tell MiniWoB's words apart (docs/train.md section 11).
    """
    cfg = vision.config
    if patch_size >= cfg.patch_size or cfg.patch_size % patch_size:
        raise ValueError(f"patch_size must divide the current {cfg.patch_size} and be smaller, got {patch_size}")
    new = VisionEncoder(dataclasses.replace(cfg, patch_size=patch_size)).to(vision.embeddings.position_embedding.weight)
    skip = ("embeddings.patch_embedding.", "embeddings.position_embedding.")
    new.load_state_dict({k: v for k, v in vision.state_dict().items() if not k.startswith(skip)}, strict=False)
    factor = cfg.patch_size // patch_size
    old, emb = vision.embeddings, new.embeddings
    emb.patch_embedding.weight.copy_(F.avg_pool2d(old.patch_embedding.weight.float(), factor) * factor * factor)
    if old.patch_embedding.bias is not None:
        emb.patch_embedding.bias.copy_(old.patch_embedding.bias)
    table, side = old.position_embedding.weight.float(), old.side
    grid = table[-side * side:].reshape(side, side, -1).permute(2, 0, 1)[None]  # [1, D, side, side]
    fine = F.interpolate(grid, size=(emb.side, emb.side), mode="bicubic", align_corners=False)
    emb.position_embedding.weight.copy_(torch.cat([table[:-side * side], fine[0].permute(1, 2, 0).flatten(0, 1)]))
    return new
