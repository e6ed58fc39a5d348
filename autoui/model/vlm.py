"""The joined model: vision encoder -> projector -> decoder, in HF Llava's layout.

A prompt's `input_ids` hold `config.image_token_id` repeated `config.num_image_tokens` times
per screenshot; `embed` swaps those embeddings for projected vision features (the selected
encoder hidden state, before `post_layernorm`, exactly as HF `LlavaForConditionalGeneration`
with the same `vision_feature_layer` / `vision_feature_select_strategy` computes). Training
and the reference `generate_greedy` run the decoder without a KV cache; the serving runtime
calls `embed` once per screenshot and then `decoder(..., cache=...)` + `logits`.

Labels follow the HF convention: aligned with `input_ids`, -100 where no loss is taken;
the shift (token t predicts token t+1) happens inside `forward`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from autoui.model.config import ModelConfig
from autoui.model.decoder import Decoder
from autoui.model.layers import init_weights
from autoui.model.projector import Projector
from autoui.model.vision import VisionEncoder

IGNORE_INDEX = -100
"""Label value for positions that take no loss (prompt, image and padding tokens)."""


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """attention_mask [B, T] -> position_ids [B, T]: 0, 1, ... over real tokens (left padding gets 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class AutoUIModel(nn.Module):
    """Screenshot + prompt tokens -> next-token logits (vision tower, projector, decoder, lm_head)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.vision = VisionEncoder(config.vision)
        self.projector = Projector(config.vision.hidden_size, config.decoder.hidden_size)
        self.decoder = Decoder(config.decoder)
        # tied: logits reuse embed_tokens.weight, so there is no second copy to keep in sync
        self.lm_head = None
        if not config.decoder.tie_word_embeddings:
            self.lm_head = nn.Linear(config.decoder.hidden_size, config.decoder.vocab_size, bias=False)
        init_weights(self)  # a no-op on the meta device

    # ---- pieces the runtime uses -------------------------------------------------------
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [B, 3, S, S] -> projected image features [B, N_img, D]."""
        feats = self.vision(pixel_values, num_layers=self.config.num_vision_layers_used)  # [B, N, Dv]
        if self.config.feature_select == "default":
            feats = feats[:, 1:]  # drop CLIP's class token: [B, N_img, Dv]
        return self.projector(feats)  # [B, N_img, D]

    def embed(self, pixel_values: torch.Tensor | None, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings with image placeholders replaced by image features -> [B, T, D].

        Each row must hold exactly `num_image_tokens` placeholders per image (one image per
        row) or none when `pixel_values` is None.
        """
        embeds = self.decoder.embed_tokens(input_ids)  # [B, T, D]
        is_image = input_ids == self.config.image_token_id  # [B, T]
        self.check_image_tokens(is_image.sum(dim=1).tolist(), None if pixel_values is None else pixel_values.shape[0])
        if pixel_values is None:
            return embeds
        feats = self.encode_images(pixel_values).to(embeds.dtype)  # [B, N_img, D]
        # rows hold the same count, so row-major scatter puts image b's features in row b
        return embeds.masked_scatter(is_image[..., None], feats)  # [B, T, D]

    def check_image_tokens(self, counts: list[int], n_images: int | None) -> None:
        """ValueError unless each prompt (its count of image placeholders in `counts`) holds exactly
        `num_image_tokens` of them, one prompt per image, or none when there are no images (None)."""
        if n_images is None:
            if any(counts):
                raise ValueError(f"input_ids hold image tokens ({counts} per row) but no pixel_values were given")
            return
        n_img = self.config.num_image_tokens
        if n_images != len(counts) or any(c != n_img for c in counts):
            raise ValueError(f"each of the {n_images} images needs exactly {n_img} image tokens "
                             f"(id {self.config.image_token_id}) in its row of input_ids; found {counts}")

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Decoder hidden states [..., D] -> vocabulary logits [..., V]."""
        weight = self.decoder.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(hidden, weight)

    # ---- training / reference path -----------------------------------------------------
    def forward(self, pixel_values: torch.Tensor | None, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                return_logits: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """-> (logits [B, T, V] or None, mean next-token loss over labels != -100, or None).

        `return_logits=False` with labels computes the lm_head only at target positions
        (cheaper for training) and returns (None, loss).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if labels is not None and labels.shape != input_ids.shape:
            raise ValueError(f"labels {list(labels.shape)} must have input_ids' shape {list(input_ids.shape)}")
        embeds = self.embed(pixel_values, input_ids)  # [B, T, D]
        hidden = self.decoder(embeds, positions_from_mask(attention_mask), attention_mask)  # [B, T, D]
        logits = self.logits(hidden) if return_logits or labels is None else None  # [B, T, V]
        if labels is None:
            return logits, None
        targets = labels[:, 1:]  # [B, T-1]: token t predicts label t+1
        keep = targets != IGNORE_INDEX
        if not bool(keep.any()):
            raise ValueError("labels hold no target tokens (all -100): nothing to learn from")
        if logits is not None:
            loss = F.cross_entropy(logits[:, :-1][keep].float(), targets[keep])
        else:
            loss = F.cross_entropy(self.logits(hidden[:, :-1][keep]).float(), targets[keep])
        return logits, loss

    @torch.no_grad()
    def generate_greedy(self, pixel_values: torch.Tensor | None, input_ids: torch.Tensor,
                        attention_mask: torch.Tensor | None = None, max_new_tokens: int = 32,
                        eos_token_id: int | None = None) -> torch.Tensor:
        """Reference greedy decoding without a KV cache -> new tokens [B, n] (n <= max_new_tokens).

        Inputs must be left-padded. The screenshot is encoded once; the decoder reruns the
        whole sequence each step. A row that produced eos continues with pad tokens; decoding
        stops when every row has produced eos.
        """
        eos = self.config.eos_token_id if eos_token_id is None else eos_token_id
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if not bool(attention_mask[:, -1].all()):
            raise ValueError("generate_greedy needs left-padded inputs (attention_mask[:, -1] must be all 1)")
        embeds = self.embed(pixel_values, input_ids)  # [B, T, D]
        mask = attention_mask.long()
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)  # [B]
        out: list[torch.Tensor] = []
        for _ in range(max_new_tokens):
            hidden = self.decoder(embeds, positions_from_mask(mask), mask)  # [B, T', D]
            nxt = self.logits(hidden[:, -1]).argmax(dim=-1)  # [B]
            nxt = torch.where(done, torch.full_like(nxt, self.config.pad_token_id), nxt)
            out.append(nxt)
            done = done | (nxt == eos)
            if bool(done.all()):
                break
            embeds = torch.cat([embeds, self.decoder.embed_tokens(nxt)[:, None]], dim=1)  # [B, T'+1, D]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)  # [B, T'+1]
        if not out:
            return input_ids.new_zeros((input_ids.shape[0], 0))
        return torch.stack(out, dim=1)  # [B, n]

    # ---- conveniences ------------------------------------------------------------------
    def num_parameters(self) -> int:
        """Number of parameters (a tied lm_head is counted once)."""
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.decoder.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the parameters."""
        return self.decoder.embed_tokens.weight.dtype

    def save_pretrained(self, directory: str | Path, tokenizer: Any = None) -> Path:
        """Write `config.json` + `model.safetensors` (+ `tokenizer.save(directory)` if given)."""
        from autoui.model.weights import save_model

        return save_model(self, directory, tokenizer=tokenizer)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None) -> "AutoUIModel":
        """Load a directory written by `save_pretrained` (built on `meta`, loaded with `assign=True`)."""
        from autoui.model.weights import load_model

        return load_model(directory, device=device, dtype=dtype)
