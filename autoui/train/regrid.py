"""Fit a re-patched vision tower to the features the coarse one gave (feature distillation).

`autoui.model.vision.repatch` keeps a trained tower's weights but changes what each token sees.
`fit_fine_grid` trains the fine tower and the projector, on screenshots alone, so that every
fine token's projected feature equals the coarse model's feature for the coarse token it lies
in. No decoder runs, so it is cheap (~2 steps/s at 256 tokens on a 2-core CPU).

What it does not do, measured (docs/train.md section 17): make the re-patched model act like
the coarse one. Even the exact targets (every coarse feature repeated on its four fine cells)
leave the decoder's output changed on 87% of held-out steps: its attention depends on where
the image tokens sit in the sequence (rotary positions), and 256 tokens put the text 192
positions later. Supervised training started from a fitted tower and from a plain re-patched
one at the same loss.
"""
from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from autoui.model.vision import repatch
from autoui.model.vlm import AutoUIModel
from autoui.train.schedule import make_scheduler


@dataclass
class RegridConfig:
    steps: int = 600
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 30
    weight_decay: float = 0.0
    bf16: bool = False  # autocast the student's forward and backward in bfloat16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0 or self.warmup < 0:
            raise ValueError(f"RegridConfig needs steps, batch_size >= 1, lr > 0, warmup >= 0; got {self}")


def repatch_model(model: AutoUIModel, patch_size: int) -> AutoUIModel:
    """`model` with its vision tower re-patched to `patch_size` and its config to match (in place)."""
    model.vision = repatch(model.vision, patch_size)
    model.config = dataclasses.replace(model.config, vision=model.vision.config)
    return model


def grid_side(model: AutoUIModel) -> int:
    """Image tokens per row of `model`'s grid (CLIP's class token is not part of the grid)."""
    n = model.config.num_image_tokens
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{n} image tokens do not form a square grid")
    return side


def repeat_on_grid(features: torch.Tensor, side: int, factor: int) -> torch.Tensor:
    """[B, side^2, D] row-major grid features -> [B, (side*factor)^2, D], each copied to its factor^2 sub-cells."""
    b, n, d = features.shape
    if n != side * side:
        raise ValueError(f"expected {side * side} grid tokens, got {n}")
    grid = features.reshape(b, side, 1, side, 1, d).expand(b, side, factor, side, factor, d)
    return grid.reshape(b, side * side * factor * factor, d)


@torch.no_grad()
def coarse_features(coarse: AutoUIModel, pixels: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """The coarse model's projected image features for `pixels` [N, 3, S, S]: [N, side^2, D] float32."""
    coarse.eval()
    return torch.cat([coarse.encode_images(pixels[i:i + chunk]).float() for i in range(0, len(pixels), chunk)])


def feature_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error relative to the target's own variance (1.0 = no better than its mean)."""
    return F.mse_loss(predicted.float(), target) / target.var().clamp_min(1e-12)


def fit_fine_grid(fine: AutoUIModel, pixels: torch.Tensor, targets: torch.Tensor, cfg: RegridConfig,
                  progress: Callable[[Iterable[int]], Iterable[int]] = iter) -> list[float]:
    """Train `fine`'s vision tower and projector (in place) so that `fine.encode_images(pixels)`
    equals `targets` [N, side^2, D] (the coarse features) repeated onto its finer grid.

    The decoder is left untouched (frozen for the call). Returns the loss of every step.
    """
    if len(pixels) != len(targets) or len(pixels) == 0:
        raise ValueError(f"need as many targets as screens (> 0), got {len(pixels)} and {len(targets)}")
    side, fine_side = math.isqrt(targets.shape[1]), grid_side(fine)
    if side * side != targets.shape[1] or fine_side % side or targets.shape[2] != fine.config.decoder.hidden_size:
        raise ValueError(f"targets [N, side^2, {fine.config.decoder.hidden_size}] must tile the "
                         f"{fine_side} x {fine_side} grid, got {list(targets.shape)}")
    trained = [p for m in (fine.vision, fine.projector) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = make_scheduler(opt, cfg.warmup, cfg.steps)
    rng = random.Random(cfg.seed)
    order: list[int] = []
    losses: list[float] = []
    frozen = [p for p in fine.decoder.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    fine.train()
    try:
        for _ in progress(range(cfg.steps)):
            if len(order) < cfg.batch_size:  # reshuffle once the screens run out (an epoch)
                order += rng.sample(range(len(pixels)), len(pixels))
            idx = torch.tensor(order[:cfg.batch_size])
            del order[:cfg.batch_size]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16 and pixels.device.type == "cpu"):
                predicted = fine.encode_images(pixels[idx])
            loss = feature_loss(predicted, repeat_on_grid(targets[idx], side, fine_side // side))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
    finally:
        for p in frozen:
            p.requires_grad_(True)
        fine.eval()
    return losses
