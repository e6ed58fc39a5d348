"""The goal-word loss: where the goal names the text the step taps, the goal's tokens of that
text must attend to it on the screen.

Why: a model trained with the grounding loss (where to tap) and the box-text loss (what the
image tokens under a box say) still taps the named word of a reading page at chance (docs/
train.md section 11). The step it cannot make is the match itself: from the goal's "lorem"
to the image tokens that show "lorem". The grounding loss asks for the match only at the
coordinate digits, several layers after the goal word was read, and says nothing about how.

What: when the tapped box's text (the smallest annotation box holding the tap) appears in the
goal as a whole word or phrase (a quoted occurrence preferred), every goal token overlapping
it is a query. Head `head` of each listed decoder layer scores the image tokens from those
positions with its own attention logits (as `GroundingLoss` does), and the loss is
-log of the attention mass on the box's patches: any patch of the box will do. With
`readout`, the head's output there must also name the tapped patch's row and column, so the
place reaches the goal word's residual stream, where later layers can copy it.

Training-only, like the other auxiliary terms: no parameters are added and the saved model
and its serving path are unchanged.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
import torch

from autoui.data.samples import normalize_space
from autoui.metrics.matching import smallest_box_holding
from autoui.model.prompt import ANSWER_MARKER, IGNORE_INDEX
from autoui.train.box_text import box_patches, char_spans
from autoui.train.grounding import GroundingLoss, tap_image_token
from autoui.train.reading import short_text


def tapped_box(sample: Any) -> int | None:
    """Index of the smallest annotation box holding the sample's tap (edges included), or None."""
    if not sample.target.is_tap:
        return None
    return smallest_box_holding(sample.target.touch_yx, getattr(sample, "ui_positions", np.zeros((0, 4))))


def named_span(goal: str, text: str) -> tuple[int, int] | None:
    """Character span of `text` in `goal` as a whole word or phrase (case-insensitive), or None.

    A quoted occurrence wins; otherwise the text must occur exactly once."""
    if not short_text(text):
        return None
    pattern = re.compile(r"(?<![0-9A-Za-z])" + re.escape(text) + r"(?![0-9A-Za-z])", re.IGNORECASE)
    spans = [m.span() for m in pattern.finditer(goal)]
    quoted = [(a, b) for a, b in spans if goal[a - 1:a] in "\"'" and a > 0 and goal[b:b + 1] == goal[a - 1]]
    if quoted:
        return quoted[0]
    return spans[0] if len(spans) == 1 else None


def token_positions(ids: Sequence[int], text: str, span: tuple[int, int], tokenizer: Any) -> list[int]:
    """Indices into `ids` (the tokens of `text`) whose characters overlap `span`; [] when the
    tokens do not spell `text` back piece by piece."""
    return [j for j, (a, b) in enumerate(char_spans(list(ids), text, tokenizer)) if a < span[1] and b > span[0]]


def goal_word_targets(sample: Any, input_ids: Sequence[int], labels: Sequence[int], letterbox: Any,
                      config: Any, tokenizer: Any) -> dict[str, Any]:
    """{"goal_query" [T]: 1 at the goal tokens naming the tapped text, "goal_box" [N_img]: 1 on the
    box's patches, "goal_patch": the tapped patch}; zeros and -1 when the step is no tap, its box
    has no text the goal names, or the goal was cut to fit the prompt."""
    none = {"goal_query": [0] * len(input_ids), "goal_box": torch.zeros(config.num_image_tokens), "goal_patch": -1}
    i = tapped_box(sample)
    if i is None or i >= len(getattr(sample, "ui_text", ())):
        return none
    goal = " " + normalize_space(sample.goal)  # exactly how `autoui.model.prompt.text_ids` encodes it
    span = named_span(goal, normalize_space(sample.ui_text[i]))
    patches = box_patches(sample.ui_positions[i], letterbox, config) if span else []
    if not patches:
        return none
    goal_ids = tokenizer.encode(goal)
    end = sum(1 for v in labels if v == IGNORE_INDEX) - len(tokenizer.encode(ANSWER_MARKER))
    start = end - len(goal_ids)
    positions = token_positions(goal_ids, goal, span, tokenizer)
    if start < 0 or list(input_ids[start:end]) != goal_ids or not positions:
        return none
    out = dict(none, goal_patch=tap_image_token(sample.target.touch_yx, letterbox, config))
    for j in positions:
        out["goal_query"][start + j] = 1
    out["goal_box"][patches] = 1.0
    return out


class GoalWordLoss(GroundingLoss):
    """`GroundingLoss`'s hooks and head logits, asked from the goal word's tokens for the named box.

    `batch` needs "input_ids", "goal_query" [B, T], "goal_box" [B, N_img] and "goal_patch" [B]
    (the tapped patch, for `readout`)."""

    def _queries(self, batch: dict[str, Any]) -> tuple[torch.Tensor, ...] | None:
        """(rows, cols, box mask [Nq, N_img], is_image [B, T]) of the batch's goal-word queries; None when none."""
        if set(self._inputs) != set(self._attn):
            raise RuntimeError("GoalWordLoss needs the model's forward on this batch first")
        dev = next(iter(self._inputs.values()))[0].device
        box = batch["goal_box"].to(dev).bool()  # [B, N_img]
        rows, cols = (batch["goal_query"].to(dev).bool() & box.any(-1)[:, None]).nonzero(as_tuple=True)
        if rows.numel() == 0:
            return None
        return rows, cols, box[rows], batch["input_ids"].to(dev) == self.image_token_id

    def box_attention(self, batch: dict[str, Any]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """{layer: (the head's attention over the image tokens [Nq, N_img] from each goal-word query,
        the named box's patches [Nq, N_img])}, for probes; {} when the batch names no tapped text."""
        found = self._queries(batch)
        out = {}
        if found is not None:
            rows, cols, box, is_image = found
            out = {i: (self._head_logits(i, rows, cols, is_image).float().softmax(-1), box) for i in self._attn}
        self._inputs = {}
        return out

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Mean over layers and query positions of -log(attention mass on the box); 0 (with a graph) when none."""
        found = self._queries(batch)
        if found is None:
            any_x = next(iter(self._inputs.values()))[0]
            self._inputs = {}
            return any_x.sum() * 0.0
        rows, cols, box, is_image = found
        terms = []
        for i in self._attn:
            logits = self._head_logits(i, rows, cols, is_image).float()  # [Nq, N_img]
            terms.append((logits.logsumexp(-1) - logits.masked_fill(~box, float("-inf")).logsumexp(-1)).mean())
            if self.spec.readout:
                terms.append(self._readout(i, rows, logits, is_image, batch["goal_patch"].to(rows.device)[rows]))
        self._inputs = {}
        return torch.stack(terms).mean()
