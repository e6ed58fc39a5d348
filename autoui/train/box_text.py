"""The box-text loss: the image tokens under each annotated box must name the words in it.

Why: the tasks the default model fails pick their target by a word, and it cannot read.
Asked to "click on the text" ONE or TWO on held-out click-test-2 screens, it hits the right
button at chance. Demonstrations teach reading only through the tap, one word per screen,
through eight layers. Every recorded step, though, has annotation boxes with their text (what
OCR reports, as in AITW). That is dense, direct supervision for the vision side.

What: for up to `boxes` short-text boxes per sample, the projected image tokens (the vectors
the decoder reads) that the box covers are averaged. Their cosine similarity to every row of
the decoder's token embedding table, times `scale`, is scored by cross-entropy against the
box's own tokens, each of its distinct tokens weighted equally. So the image token of a word
must lie near the embeddings of that word's pieces, and the goal's quoted word and the
screen's word then meet in the same space. No parameters are added. The model, its saved
weights and its serving path are unchanged. It is a training-only term with a weight, like
the grounding loss.

`split="column"` makes the supervision local: a box is cut into its columns of patches, and
each column is scored against the tokens whose characters fall in it (a token's place is its
share of the text's characters, laid evenly over the box's width; each token weighted by its
overlap with the column). A word then has to be read where its pieces are, not as a bag over
the whole box. Boxes whose tokens do not spell the text back are skipped in this mode.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from autoui.data.samples import normalize_space
from autoui.train.reading import short_text

SCALE = 16.0
"""Cosine-similarity logits are multiplied by this (a fixed temperature of 1/16)."""
SPLITS = ("box", "column")
"""What one row of the loss pools: a whole box, or one column of patches of a box."""


def _grid(box: Any, letterbox: Any, config: Any) -> tuple[range, range, tuple[float, float]] | None:
    """(patch rows, patch columns, the box's x-range on the image in [0, 1]) of a normalized box; None if empty."""
    side = config.vision.image_size // config.vision.patch_size
    y, x, h, w = (float(v) for v in box)
    y0, x0 = letterbox.screen_to_image(max(y, 0.0), max(x, 0.0))
    y1, x1 = letterbox.screen_to_image(min(y + h, 1.0), min(x + w, 1.0))
    if y1 <= y0 or x1 <= x0:
        return None
    rows = range(int(y0 * side), min(side - 1, int(y1 * side - 1e-6)) + 1)
    cols = range(int(x0 * side), min(side - 1, int(x1 * side - 1e-6)) + 1)
    return rows, cols, (x0, x1)


def _tokens(rows: range, cols: range, config: Any) -> list[int]:
    side = config.vision.image_size // config.vision.patch_size
    offset = config.num_image_tokens - side * side
    return [offset + r * side + c for r in rows for c in cols]


def box_patches(box: Any, letterbox: Any, config: Any) -> list[int]:
    """Image-token indices of the patches that a normalized screen box (y, x, h, w) overlaps."""
    grid = _grid(box, letterbox, config)
    return _tokens(grid[0], grid[1], config) if grid else []


def char_spans(ids: list[int], text: str, tokenizer: Any) -> list[tuple[int, int]]:
    """Characters [a, b) of `text` that each of its token `ids` holds; [] when the tokens, decoded
    one by one, do not spell `text` back."""
    pieces = [tokenizer.decode([i]) for i in ids]
    if "".join(pieces) != text:
        return []
    out, at = [], 0
    for piece in pieces:
        out.append((at, at + len(piece)))
        at += len(piece)
    return out


def column_targets(text: str, ids: list[int], cols: range, x_range: tuple[float, float], side: int,
                   tokenizer: Any) -> list[tuple[int, dict[int, float]]]:
    """(column, {token id: weight summing to 1}) for each patch column the text's tokens reach.

    Token j holds characters [a, b) of `text`; it is placed at x0 + (x1 - x0) * [a, b) / len(text)
    and weighs, in a column, its overlap with it. [] when the tokens do not spell `text`."""
    (x0, x1), n = x_range, len(text)
    spans = [(i, x0 + (x1 - x0) * a / n, x0 + (x1 - x0) * b / n)
             for i, (a, b) in zip(ids, char_spans(ids, text, tokenizer))]
    out = []
    for c in cols:
        weights: dict[int, float] = {}
        for i, a, b in spans:
            overlap = min(b, (c + 1) / side) - max(a, c / side)
            if overlap > 0:
                weights[i] = weights.get(i, 0.0) + overlap
        total = sum(weights.values())
        if total > 0:
            out.append((c, {i: v / total for i, v in weights.items()}))
    return out


def box_text_tensors(sample: Any, letterbox: Any, config: Any, tokenizer: Any, boxes: int,
                     split: str = "box") -> tuple[torch.Tensor, torch.Tensor]:
    """Pooling weights [K, N_img] and target token distributions [K, V] for up to K = `boxes`
    short-text boxes (split="box") or box columns (split="column") of `sample`, drawn per
    (episode, step, epoch); unused rows are zero."""
    if split not in SPLITS:
        raise ValueError(f"box-text split must be one of {SPLITS}, got {split!r}")
    side = config.vision.image_size // config.vision.patch_size
    candidates: list[tuple[list[int], dict[int, float]]] = []
    for i, raw in enumerate(getattr(sample, "ui_text", ())):
        text = normalize_space(raw)
        grid = _grid(sample.ui_positions[i], letterbox, config) if short_text(text) else None
        ids = tokenizer.encode(text) if grid else []
        if not ids:
            continue
        rows, cols, x_range = grid
        if split == "box":
            distinct = sorted(set(ids))
            candidates.append((_tokens(rows, cols, config), {t: 1.0 / len(distinct) for t in distinct}))
        else:
            candidates.extend((_tokens(rows, range(c, c + 1), config), weights)
                              for c, weights in column_targets(text, ids, cols, x_range, side, tokenizer))
    rng = random.Random(f"box-text:{sample.episode_id}:{sample.step_id}:{getattr(sample, 'epoch', 0)}")
    pool = torch.zeros(boxes, config.num_image_tokens)
    target = torch.zeros(boxes, config.decoder.vocab_size)
    for k, (patches, weights) in enumerate(rng.sample(candidates, min(boxes, len(candidates)))):
        pool[k, patches] = 1.0 / len(patches)
        target[k, list(weights)] = torch.tensor(list(weights.values()))
    return pool, target


@dataclass(frozen=True)
class BoxTextSpec:
    """How much the term weighs, how many boxes per sample, and the cosine-logit scale."""

    weight: float
    boxes: int = 6
    scale: float = SCALE


class BoxTextLoss:
    """Capture the projector's output during a forward, then score it against the boxes' tokens.

    Call `loss(batch)` right after the model's forward on that batch; `batch` needs "box_pool"
    [B, K, N_img] and "box_target" [B, K, V] (`box_text_tensors` per example, stacked).
    """

    def __init__(self, model: Any, spec: BoxTextSpec):
        if spec.boxes < 1:
            raise ValueError(f"box-text boxes must be >= 1, got {spec.boxes}")
        self.spec, self.model = spec, model
        self._feats: torch.Tensor | None = None
        self._hook = model.projector.register_forward_hook(self._capture)

    def _capture(self, module: Any, args: tuple, output: torch.Tensor) -> None:
        self._feats = output  # [B, N_img, D]

    def close(self) -> None:
        """Remove the hook (the model is then exactly as before)."""
        self._hook.remove()
        self._feats = None

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Soft cross-entropy over the vocabulary, averaged over the boxes; 0 (with a graph) when none."""
        feats, self._feats = self._feats, None
        if feats is None:
            raise RuntimeError("BoxTextLoss.loss needs the model's forward on this batch first (a cached "
                               "vision tower does not run the projector's hook)")
        pool = batch["box_pool"].to(feats.device, feats.dtype)  # [B, K, N]
        target = batch["box_target"].to(feats.device)  # [B, K, V]
        has = target.sum(-1) > 0  # [B, K]
        if not bool(has.any()):
            return feats.sum() * 0.0
        pooled = torch.einsum("bkn,bnd->bkd", pool, feats)[has]  # [M, D]
        logp = vocab_log_probs(pooled, self.model.decoder.embed_tokens.weight, self.spec.scale)
        return -(target[has] * logp).sum(-1).mean()


def vocab_log_probs(pooled: torch.Tensor, table: torch.Tensor, scale: float = SCALE) -> torch.Tensor:
    """Pooled box vectors [M, D] -> log-probabilities [M, V] over the token-embedding table [V, D] (cosine x scale)."""
    logits = F.normalize(pooled.float(), dim=-1) @ F.normalize(table.float(), dim=-1).T * scale
    return logits.log_softmax(-1)
