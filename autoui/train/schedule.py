"""Learning-rate schedule: linear warmup then cosine decay, as a `LambdaLR` multiplier.

A pure function of the step, so a resumed run recomputes exactly the same rates from the
scheduler's saved step counter.
"""
from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr at optimizer `step` (0-based).

    Rises linearly over `warmup` steps to 1, then follows a half cosine down to
    `min_ratio` at step `total`; stays at `min_ratio` beyond it.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    decay_steps = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, warmup: int, total: int,
                   min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` applying `warmup_cosine` (call `.step()` once per optimizer step)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup, total, min_ratio))
