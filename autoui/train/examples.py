"""Samples -> model-ready training examples and batches (runs inside DataLoader workers).

`ExampleBuilder` is picklable (tokenizer, model config, preprocessor) so every worker
tokenizes and letterboxes its own samples; the main process only runs the model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from autoui.data.collate import collate
from autoui.model.preprocess import ScreenPreprocessor
from autoui.model.prompt import PromptError, PromptLimits, build_training_example, target_ids
from autoui.train.augment import Augment
from autoui.train.box_text import box_text_tensors
from autoui.train.goal_words import goal_word_targets
from autoui.train.grounding import coordinate_token_ids, query_mask, tap_image_token


@dataclass
class ExampleBuilder:
    """Turn a `Sample` into {"input_ids", "labels", "pixel_values" [3, S, S], "key"}."""

    tokenizer: Any
    config: Any
    fmt: str = "compact"
    with_plan: bool = True
    limits: PromptLimits = field(default_factory=PromptLimits)
    augment: Augment = field(default_factory=Augment)
    grounding: bool = False
    """Also emit "ground_patch" and "ground_query" for `autoui.train.grounding.GroundingLoss`."""
    box_text: int = 0
    """Also emit "box_pool" and "box_target" for up to this many boxes (`autoui.train.box_text`)."""
    box_text_split: str = "box"
    """Rows of the box-text loss: whole boxes or box columns (`autoui.train.box_text.SPLITS`)."""
    goal_words: bool = False
    """Also emit "goal_query", "goal_box" and "goal_patch" for `autoui.train.goal_words.GoalWordLoss`."""

    def __post_init__(self) -> None:
        self.preprocess = ScreenPreprocessor.from_config(self.config)
        self.coordinate_ids = coordinate_token_ids(self.tokenizer) if self.grounding else frozenset()

    def accepts(self, sample: Any) -> bool:
        """False when the sample's target does not fit `limits.max_target_tokens` (cutting it would teach a broken action)."""
        try:
            target_ids(self.tokenizer, sample.target_text(self.fmt, with_plan=self.with_plan), self.limits)
        except PromptError:
            return False
        return True

    def __call__(self, sample: Any) -> dict[str, Any]:
        sample = self.augment(sample)
        input_ids, labels = build_training_example(self.tokenizer, self.config, sample, self.fmt,
                                                   self.with_plan, self.limits)
        pixels, letterbox = self.preprocess(sample.image)  # [3, S, S]
        example = {"input_ids": input_ids, "labels": labels, "pixel_values": pixels,
                   "key": (str(sample.episode_id), int(sample.step_id))}
        if self.grounding:
            tap = sample.target.is_tap
            example["ground_patch"] = tap_image_token(sample.target.touch_yx, letterbox, self.config) if tap else -1
            example["ground_query"] = query_mask(labels, self.coordinate_ids) if tap else [0] * len(labels)
        if self.goal_words:
            example.update(goal_word_targets(sample, input_ids, labels, letterbox, self.config, self.tokenizer))
        if self.box_text:
            example["box_pool"], example["box_target"] = box_text_tensors(
                sample, letterbox, self.config, self.tokenizer, self.box_text, self.box_text_split)
        return example


@dataclass(frozen=True)
class BatchCollator:
    """Pad a list of examples (see `autoui.data.collate.collate`) and keep their cache keys."""

    pad_id: int
    padding_side: str = "right"

    def __call__(self, batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = collate(batch, pad_id=self.pad_id, padding_side=self.padding_side)
        out["keys"] = [ex["key"] for ex in batch]
        if "ground_patch" in batch[0]:
            out["ground_patch"] = torch.tensor([ex["ground_patch"] for ex in batch])  # [B]
            out["ground_query"] = collate([{"input_ids": ex["ground_query"]} for ex in batch], pad_id=0,
                                          padding_side=self.padding_side)["input_ids"]  # [B, T]
        if "goal_box" in batch[0]:
            out["goal_patch"] = torch.tensor([ex["goal_patch"] for ex in batch])  # [B]
            out["goal_box"] = torch.stack([ex["goal_box"] for ex in batch])  # [B, N_img]
            out["goal_query"] = collate([{"input_ids": ex["goal_query"]} for ex in batch], pad_id=0,
                                        padding_side=self.padding_side)["input_ids"]  # [B, T]
        if "box_pool" in batch[0]:
            out["box_pool"] = torch.stack([ex["box_pool"] for ex in batch])  # [B, K, N_img]
            out["box_target"] = torch.stack([ex["box_target"] for ex in batch])  # [B, K, V]
        return out
