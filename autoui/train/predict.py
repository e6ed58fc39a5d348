"""Batched greedy prediction over AITW-schema data, for validation during training and `train/eval_aitw.py`.

Prompts are built exactly as in training (`autoui.model.prompt.build_inputs`), left-padded
(generation reads the last column), decoded greedily and returned as text; parsing and
scoring are the metric's job (`autoui.metrics`), so an unparseable answer is scored as wrong
rather than dropped here.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

from autoui.data.aitw import read_episodes
from autoui.data.collate import collate
from autoui.data.samples import make_samples
from autoui.model.preprocess import ScreenPreprocessor
from autoui.model.prompt import PromptLimits, build_inputs, decode_text

log = logging.getLogger("autoui.train.predict")

DEFAULT_MAX_NEW_TOKENS = {"compact": 32, "autoui": 96}
"""Enough for any action with its plan in each format (longest typed texts aside)."""


def eval_pairs(paths: Any, episode_ids: frozenset[str] | None = None, max_steps: int | None = None,
               history: int = 8, plan: int = 4, skip_corrupt: bool = False) -> Iterator[tuple[Any, Any]]:
    """(Step, Sample) pairs in file order, whole episodes only, stopping once `max_steps` are reached."""
    count = 0
    for episode in read_episodes(paths, skip_corrupt=skip_corrupt):
        if episode_ids is not None and episode.episode_id not in episode_ids:
            continue
        if max_steps is not None and count >= max_steps:
            return
        samples = make_samples(episode, history=history, plan=plan)
        count += len(samples)
        yield from zip(episode.steps, samples)


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of `size` items (the last may be shorter)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def predict_texts(model: Any, tokenizer: Any, samples: Sequence[Any], fmt: str = "compact",
                  max_new_tokens: int | None = None, limits: PromptLimits = PromptLimits()) -> list[str]:
    """Greedy action text for each sample (one batch; the caller chooses its size)."""
    if not samples:
        return []
    config = model.config
    prompts = [{"input_ids": build_inputs(tokenizer, config, s.goal, s.history, fmt, limits)} for s in samples]
    batch = collate(prompts, pad_id=tokenizer.pad_id, padding_side="left")
    pixels, _ = ScreenPreprocessor.from_config(config).batch([s.image for s in samples])  # [B, 3, S, S]
    device = model.device
    new = model.generate_greedy(
        pixels.to(device), batch["input_ids"].to(device), batch["attention_mask"].to(device),
        max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS[fmt], eos_token_id=tokenizer.eos_id)  # [B, n]
    return [decode_text(tokenizer, row.tolist()) for row in new.cpu()]
