"""Average the weights of models fine-tuned from one start ("model soups", Wortsman et al. 2022).

`average_models([a, b, c], weights=None)` returns a new model whose every tensor is the weighted
mean of the inputs' (fp32 arithmetic, uniform by default). It only makes sense for models that
share an architecture, a tokenizer and a start, e.g. successive stages of one recipe or a
run's late checkpoints; anything else is refused, never silently mixed.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from autoui.model.vlm import AutoUIModel

SOUP_FILE = "soup.json"
"""Written beside an averaged model: which models went in, with which weights."""


def soup_weights(n: int, weights: Sequence[float] | None = None) -> list[float]:
    """n models' mixing weights, normalised to sum to 1 (uniform when `weights` is None)."""
    if n < 2:
        raise ValueError(f"a soup needs at least 2 models, got {n}")
    w = [1.0] * n if weights is None else [float(v) for v in weights]
    if len(w) != n:
        raise ValueError(f"{len(w)} weights for {n} models")
    if any(v < 0 for v in w) or sum(w) <= 0:
        raise ValueError(f"soup weights must be >= 0 with a positive sum, got {w}")
    return [v / sum(w) for v in w]


def average_models(models: Sequence[AutoUIModel], weights: Sequence[float] | None = None) -> AutoUIModel:
    """The weighted mean of `models` (same config required), as a new fp32 model."""
    w = soup_weights(len(models), weights)
    first = models[0].config.to_dict()
    for i, m in enumerate(models[1:], 1):
        if m.config.to_dict() != first:
            raise ValueError(f"model {i} has another architecture than model 0; only models of one config can be averaged")
    states = [m.state_dict() for m in models]
    out = copy.deepcopy(models[0]).float()
    mean = {}
    for name, ref in out.state_dict().items():
        if not ref.is_floating_point():
            if any(not torch.equal(s[name], states[0][name]) for s in states[1:]):
                raise ValueError(f"{name}: integer buffers differ between the models")
            mean[name] = states[0][name]
            continue
        mean[name] = sum(wi * s[name].float() for wi, s in zip(w, states))
    out.load_state_dict(mean)
    return out
