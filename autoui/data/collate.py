"""Pad variable-length examples into one batch and stack their screenshots.

Padding side:
- training ("right", the default): tokens start at position 0 of every row, padding and
  its labels (-100) at the end; simplest to read and what `AutoUIModel.forward` expects.
- generation ("left"): every prompt ENDS at the last column, so the next token of every
  row is read from `logits[:, -1]`; `AutoUIModel.generate_greedy` requires it and derives
  positions from the attention mask, so left padding does not shift positions.

Use `functools.partial(collate, pad_id=tok.pad_id, padding_side="left")` as a DataLoader's
`collate_fn` when the defaults do not fit.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

IGNORE_INDEX = -100
"""Label value for padding (matches `autoui.model.vlm.IGNORE_INDEX`)."""
PADDING_SIDES = ("right", "left")


class CollateError(ValueError):
    """Examples that cannot be batched together (missing keys, mismatched shapes)."""


def _as_long(values: Any, name: str, index: int) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.long)
    if t.ndim != 1 or t.numel() == 0:
        raise CollateError(f"example {index}: {name} must be a non-empty 1-D sequence, got shape {list(t.shape)}")
    return t


def _pad(rows: list[torch.Tensor], value: int, side: str) -> torch.Tensor:
    width = max(r.numel() for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)  # [B, T]
    for i, r in enumerate(rows):
        if side == "right":
            out[i, : r.numel()] = r
        else:
            out[i, width - r.numel():] = r
    return out


def collate(batch: Sequence[Mapping[str, Any]], pad_id: int = 0, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Examples {"input_ids", optional "labels", optional "pixel_values" [3, S, S]} -> a batch.

    Returns input_ids [B, T], attention_mask [B, T] (1 on real tokens), labels [B, T]
    (-100 on padding) when every example has labels, and pixel_values [B, 3, S, S] when
    every example has one.
    """
    if padding_side not in PADDING_SIDES:
        raise CollateError(f"padding_side must be one of {PADDING_SIDES}, got {padding_side!r}")
    if not batch:
        raise CollateError("cannot collate an empty batch")
    ids = [_as_long(ex["input_ids"], "input_ids", i) if "input_ids" in ex else None for i, ex in enumerate(batch)]
    if any(t is None for t in ids):
        raise CollateError("every example needs input_ids")
    out = {
        "input_ids": _pad(ids, pad_id, padding_side),
        "attention_mask": _pad([torch.ones_like(t) for t in ids], 0, padding_side),
    }
    with_labels = ["labels" in ex for ex in batch]
    if any(with_labels):
        if not all(with_labels):
            raise CollateError("either every example has labels or none does")
        labels = [_as_long(ex["labels"], "labels", i) for i, ex in enumerate(batch)]
        for i, (a, b) in enumerate(zip(ids, labels)):
            if a.numel() != b.numel():
                raise CollateError(f"example {i}: {b.numel()} labels for {a.numel()} input_ids")
        out["labels"] = _pad(labels, IGNORE_INDEX, padding_side)
    with_pixels = ["pixel_values" in ex for ex in batch]
    if any(with_pixels):
        if not all(with_pixels):
            raise CollateError("either every example has pixel_values or none does")
        shapes = {tuple(ex["pixel_values"].shape) for ex in batch}
        if len(shapes) != 1:
            raise CollateError(f"pixel_values of different shapes cannot be stacked: {sorted(shapes)}")
        out["pixel_values"] = torch.stack([torch.as_tensor(ex["pixel_values"]) for ex in batch])  # [B, 3, S, S]
    return out
