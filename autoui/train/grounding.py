"""The grounding loss: teach chosen attention heads to look at the screen patch that gets tapped.

Why: trained from scratch with next-token loss alone, the decoder must discover both where the
target is and how to turn that place into coordinate digits, and neither can improve before
the other does. It stays on a plateau where it emits one tap per task (measured: a fresh
default-preset model did not learn to tap the only box on a blank screen in 400 steps).

What: for every tap target, at each position whose *next* token is a coordinate token, head
`head` of each listed decoder layer scores the image tokens with its own query and keys
(RoPE applied, exactly the logits that head's attention uses), and a cross-entropy over
those image tokens asks for the patch that holds the tap point. It is a training-only
auxiliary term added to the next-token loss with a weight: the model, its saved weights and
its serving path are unchanged. The same toy task is solved in ~200 steps with it.

With `readout`, the head's attention output over the image tokens must also name the
target's row and column in fixed channels, so that what it found is easy to write as digits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from autoui.model.layers import apply_rope
from autoui.model.preprocess import Letterbox


def tap_image_token(yx: tuple[float, float], letterbox: Letterbox, config: Any) -> int:
    """Index (among the model's image tokens) of the patch holding normalized screen point `yx`."""
    side = config.vision.image_size // config.vision.patch_size
    y, x = letterbox.screen_to_image(*yx)
    row = min(side - 1, max(0, int(y * side)))
    col = min(side - 1, max(0, int(x * side)))
    offset = config.num_image_tokens - side * side  # 1 when CLIP's class token is kept ("full")
    return offset + row * side + col


def coordinate_token_ids(tokenizer: Any) -> frozenset[int]:
    """Ids whose text is digits (with or without a leading space): coordinate pieces in either format."""
    ids = set()
    for i in range(tokenizer.vocab_size):
        text = tokenizer.decode([i], skip_special_tokens=True).strip()
        if text and text.isascii() and text.isdigit():
            ids.add(i)
    return frozenset(ids)


def query_mask(labels: Sequence[int], coordinate_ids: frozenset[int]) -> list[int]:
    """1 at each position whose next label is a coordinate token (those positions predict it), else 0."""
    nxt = list(labels[1:]) + [-100]
    return [1 if int(t) in coordinate_ids else 0 for t in nxt]


@dataclass(frozen=True)
class GroundingSpec:
    """Which heads learn to point, and how much the term weighs against the next-token loss."""

    weight: float
    layers: tuple[int, ...]
    head: int = 0
    readout: bool = False
    """Also ask the head's output at the query to name the target's row and column in its first
    2 x side channels (a fixed, parameter-free code), so the place it looked at reaches the
    residual stream in a form the coordinate digits can be read from."""


class GroundingLoss:
    """Capture the attention inputs of the chosen layers during a forward, then score them.

    Call `loss(batch)` right after the model's forward on that batch. `batch` needs
    "input_ids" [B, T], "ground_query" [B, T] (1 where a coordinate token is predicted) and
    "ground_patch" [B] (image-token index of the tap, -1 when the target is no tap).
    """

    def __init__(self, model: Any, spec: GroundingSpec):
        layers = model.decoder.layers
        bad = [i for i in spec.layers if not 0 <= i < len(layers)]
        if bad or not spec.layers:
            raise ValueError(f"grounding layers must be in 0..{len(layers) - 1}, got {list(spec.layers)}")
        cfg = model.config
        if not 0 <= spec.head < cfg.decoder.num_heads:
            raise ValueError(f"grounding head must be in 0..{cfg.decoder.num_heads - 1}, got {spec.head}")
        self.spec, self.image_token_id = spec, cfg.image_token_id
        self._side = cfg.vision.image_size // cfg.vision.patch_size
        self._first_patch = cfg.num_image_tokens - self._side ** 2
        if spec.readout and 2 * self._side > cfg.decoder.resolved_head_dim:
            raise ValueError(f"the readout code needs head_dim >= {2 * self._side}, got {cfg.decoder.resolved_head_dim}")
        self._attn = {i: layers[i].self_attn for i in spec.layers}
        self._kv_head = spec.head // (cfg.decoder.num_heads // cfg.decoder.num_kv_heads)  # GQA: the head's K/V
        self._inputs: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._hooks = [a.register_forward_pre_hook(self._capture) for a in self._attn.values()]

    def _capture(self, module: Any, args: tuple) -> None:
        self._inputs[module.layer_idx] = args[:3]  # normed hidden [B, T, D], cos, sin

    def close(self) -> None:
        """Remove the hooks (the model is then exactly as before)."""
        for h in self._hooks:
            h.remove()
        self._hooks, self._inputs = [], {}

    def _project(self, layer: int, name: str, idx: int, rope: bool = True) -> torch.Tensor:
        """Head `idx` of q/k/v_proj of `layer` over the captured input -> [B, T, hd] (RoPE'd unless told)."""
        attn = self._attn[layer]
        x, cos, sin = self._inputs[layer]
        hd, lin = attn.head_dim, getattr(attn, name)
        w = lin.weight[idx * hd:(idx + 1) * hd]
        b = None if lin.bias is None else lin.bias[idx * hd:(idx + 1) * hd]
        out = F.linear(x, w, b)  # [B, T, hd]
        return apply_rope(out[:, None], cos, sin)[:, 0] if rope else out

    def _head_logits(self, layer: int, rows: torch.Tensor, cols: torch.Tensor,
                     is_image: torch.Tensor) -> torch.Tensor:
        """Attention logits of the chosen head: queries at (rows, cols) vs their row's image keys -> [Nq, N_img]."""
        hd, b = self._attn[layer].head_dim, is_image.shape[0]
        q = self._project(layer, "q_proj", self.spec.head)[rows, cols]  # [Nq, hd]
        k = self._project(layer, "k_proj", self._kv_head)[is_image].view(b, -1, hd)  # [B, N_img, hd]
        return torch.einsum("qd,qnd->qn", q, k[rows]) / hd ** 0.5  # [Nq, N_img]

    def _readout(self, layer: int, rows: torch.Tensor, logits: torch.Tensor, is_image: torch.Tensor,
                 target: torch.Tensor) -> torch.Tensor:
        """CE of the head's image-attention output, channels [0, side) vs row and [side, 2 side) vs column."""
        hd = self._attn[layer].head_dim
        v = self._project(layer, "v_proj", self._kv_head, rope=False)[is_image].view(is_image.shape[0], -1, hd)
        out = torch.einsum("qn,qnd->qd", logits.float().softmax(-1), v[rows].float())  # [Nq, hd]
        side, patch = self._side, target - self._first_patch
        return F.cross_entropy(out[:, :side], patch // side) + F.cross_entropy(out[:, side:2 * side], patch % side)

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Mean cross-entropy over layers and query positions; 0 (with a graph) when the batch has no tap."""
        if set(self._inputs) != set(self._attn):
            raise RuntimeError("GroundingLoss.loss needs the model's forward on this batch first")
        any_x = next(iter(self._inputs.values()))[0]
        dev = any_x.device
        input_ids = batch["input_ids"].to(dev)
        queries = batch["ground_query"].to(dev).bool() & (batch["ground_patch"].to(dev) >= 0)[:, None]
        rows, cols = queries.nonzero(as_tuple=True)
        if rows.numel() == 0:
            self._inputs = {}
            return any_x.sum() * 0.0
        target = batch["ground_patch"].to(dev)[rows]  # [Nq]
        is_image = input_ids == self.image_token_id  # [B, T]
        terms = []
        for i in self._attn:
            logits = self._head_logits(i, rows, cols, is_image)  # [Nq, N_img]
            terms.append(F.cross_entropy(logits.float(), target))
            if self.spec.readout:
                terms.append(self._readout(i, rows, logits, is_image, target))
        self._inputs = {}
        return torch.stack(terms).mean()
