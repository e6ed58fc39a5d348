"""The peer the runtime is measured against: HF transformers `generate()` on the exported model.

`HFRunner` loads the Llava checkpoint written by `autoui.model.hf_export.export_hf` (the
same tensors, renamed) and generates greedily from the same prompt ids and pixel values
as the runtime. Cache choices: HF's plain `DynamicCache`, or its `QuantizedCache`
(`quanto` int2/int4, which needs `optimum-quanto`; `fp8`, which needs nothing more).
HF generate is unconstrained: it may write text that is not an action.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import torch

log = logging.getLogger("autoui.runtime.bench")

HF_CACHES = {
    "dynamic": {},
    "quanto-int4": {"cache_implementation": "quantized", "cache_config": {"backend": "quanto", "nbits": 4}},
    "fp8": {"cache_implementation": "quantized", "cache_config": {"backend": "fp8"}},
}
"""generate() keyword arguments of each HF cache this benchmark knows."""
HF_QUANTIZED = ("quanto-int4", "fp8")


class HFUnavailable(RuntimeError):
    """An HF cache or model that cannot run here (the message says why)."""


class HFRunner:
    """Greedy `LlavaForConditionalGeneration.generate` with one cache choice."""

    def __init__(self, export_dir: str | Path, cache: str = "dynamic", device: str = "cpu",
                 dtype: torch.dtype = torch.float32):
        from transformers import LlavaForConditionalGeneration

        if cache not in HF_CACHES:
            raise ValueError(f"unknown HF cache {cache!r}; one of {sorted(HF_CACHES)}")
        self.cache, self.device = cache, torch.device(device)
        self.model = LlavaForConditionalGeneration.from_pretrained(str(export_dir), dtype=dtype).to(device).eval()
        cfg = self.model.config
        self.kwargs = dict(HF_CACHES[cache])
        if cache.startswith("quanto"):
            # quanto groups the flattened [heads * tokens * head_dim] of a batch row (axis 0): a group
            # size dividing head_dim divides it for every prompt length (the default 64 often does not)
            text = cfg.get_text_config(decoder=True)
            head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
            group = 32 if head_dim % 32 == 0 else head_dim
            self.kwargs["cache_config"] = {**self.kwargs["cache_config"], "q_group_size": group}
        self.pad_id = cfg.pad_token_id if cfg.pad_token_id is not None else cfg.text_config.pad_token_id
        self.eos_id = cfg.text_config.eos_token_id

    def generate(self, prompts: Sequence[tuple[Sequence[int], torch.Tensor]], max_new_tokens: int) -> list[list[int]]:
        """New ids per prompt (EOS included when produced, nothing after it); prompts are left-padded."""
        lens = [len(ids) for ids, _ in prompts]
        T = max(lens)
        ids = torch.full((len(prompts), T), self.pad_id, dtype=torch.long)  # [B, T] left padding
        mask = torch.zeros((len(prompts), T), dtype=torch.long)  # [B, T]
        for b, (row, _) in enumerate(prompts):
            ids[b, T - lens[b]:] = torch.as_tensor(list(row), dtype=torch.long)
            mask[b, T - lens[b]:] = 1
        pixels = torch.stack([px for _, px in prompts]).to(self.device, self.model.dtype)  # [B, 3, S, S]
        try:
            out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                      pixel_values=pixels, max_new_tokens=max_new_tokens, min_new_tokens=0,
                                      do_sample=False, num_beams=1, eos_token_id=self.eos_id, pad_token_id=self.pad_id,
                                      **self.kwargs)
        except (ImportError, ValueError, RuntimeError) as exc:
            raise HFUnavailable(f"HF generate with the {self.cache} cache failed: {type(exc).__name__}: {exc}") from exc
        return [cut_at_eos(row.tolist(), self.eos_id) for row in out[:, T:].cpu()]  # [B, n] -> lists


def cut_at_eos(ids: Sequence[int], eos_id: int) -> list[int]:
    """`ids` up to and including the first EOS (padding after it dropped)."""
    ids = [int(i) for i in ids]
    return ids[: ids.index(eos_id) + 1] if eos_id in ids else ids


def dynamic_cache_bytes_per_token(model: Any) -> int:
    """Bytes one token takes in HF's `DynamicCache` of `model` (all layers, K and V)."""
    cfg = model.config.get_text_config(decoder=True)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * model.dtype.itemsize
