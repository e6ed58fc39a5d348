"""The language decoder: a Llama/Qwen2-style transformer with HF `LlamaModel` parameter names.

RMSNorm, rotary position embeddings, grouped-query attention, SwiGLU MLP; optional q/k/v
bias (Qwen2). Attention has two modes and one code path otherwise:
- no cache: causal self-attention over the given sequence with a padding mask (training and
  the reference greedy generation);
- with an `autoui.runtime.protocol.AttentionCache`: each layer hands its RoPE-applied q/k/v
  of the new tokens to `cache.attend(layer_idx, q, k, v)`; the runtime owns K/V memory.
The lm_head lives in `AutoUIModel` (as in HF's `LlamaForCausalLM`), not here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from autoui.model.config import DecoderConfig
from autoui.model.layers import FusedLinears, RMSNorm, SwiGLU, apply_rope, rope_cos_sin

if TYPE_CHECKING:
    from autoui.runtime.protocol import AttentionCache


def padded_causal_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """attention_mask [B, T] (1 = real token) -> boolean SDPA mask [B, 1, T, T] (True = may attend).

    Each query sees earlier real keys. A padding query would see no key at all, which makes
    softmax NaN; letting it see itself keeps every row finite (its output is never used).
    """
    t = attention_mask.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=attention_mask.device).tril()  # [T, T]
    keep = causal[None] & attention_mask.bool()[:, None, :]  # [B, T, T]
    keep = keep | torch.eye(t, dtype=torch.bool, device=attention_mask.device)[None]
    return keep[:, None]  # [B, 1, T, T]


class DecoderAttention(nn.Module):
    """Grouped-query self-attention with RoPE (`self_attn.{q,k,v,o}_proj`)."""

    def __init__(self, cfg: DecoderConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads, self.num_kv_heads = cfg.num_heads, cfg.num_kv_heads
        self.head_dim = cfg.resolved_head_dim
        d, hd = cfg.hidden_size, cfg.resolved_head_dim
        self.q_proj = nn.Linear(d, cfg.num_heads * hd, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(d, cfg.num_kv_heads * hd, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(d, cfg.num_kv_heads * hd, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(cfg.num_heads * hd, d, bias=False)
        object.__setattr__(self, "_qkv", FusedLinears(self.q_proj, self.k_proj, self.v_proj))  # not a submodule

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None, cache: "AttentionCache | None") -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self._qkv(x)  # one matmul when not training
        q = q.reshape(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # [B, Hq, T, Dh]
        k = k.reshape(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, T, Dh]
        v = v.reshape(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, T, Dh]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            out = cache.attend(self.layer_idx, q, k, v)  # [B, Hq, T, Dh]
        else:
            if self.num_kv_heads != self.num_heads:
                # explicit repeat: SDPA's enable_gqa falls back to the slow math kernel on CPU
                rep = self.num_heads // self.num_kv_heads
                k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)  # [B, Hq, T, Dh]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim))  # [B, T, D]


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: DecoderConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = DecoderAttention(cfg, layer_idx)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None, cache: "AttentionCache | None") -> torch.Tensor:  # [B, T, D]
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    """Token embeddings + layers + final norm (HF's `LlamaModel` / `Qwen2Model`)."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                cache: "AttentionCache | None" = None) -> torch.Tensor:
        """inputs_embeds [B, T, D], position_ids [B, T], attention_mask [B, T] or None -> hidden [B, T, D].

        Without `cache`, attention is causal within the T tokens and skips padded keys
        (attention_mask 0). With `cache`, masking is the cache's business and
        `attention_mask` is ignored; `position_ids` must then be the tokens' true positions.
        """
        b, t, d = inputs_embeds.shape
        if d != self.config.hidden_size:
            raise ValueError(f"inputs_embeds width {d} != decoder hidden_size {self.config.hidden_size}")
        if position_ids is None:
            position_ids = torch.arange(t, device=inputs_embeds.device).expand(b, t)  # [B, T]
        if position_ids.shape != (b, t):
            raise ValueError(f"position_ids must be [{b}, {t}], got {list(position_ids.shape)}")
        cos, sin = rope_cos_sin(position_ids, self.config.resolved_head_dim, self.config.rope_theta,
                                inputs_embeds.dtype)  # [B, 1, T, Dh] each
        mask = None
        if cache is None and attention_mask is not None:
            if attention_mask.shape != (b, t):
                raise ValueError(f"attention_mask must be [{b}, {t}], got {list(attention_mask.shape)}")
            if not bool(attention_mask.all()):  # no padding: keep SDPA's fast is_causal path
                mask = padded_causal_mask(attention_mask)  # [B, 1, T, T]
        x = inputs_embeds
        for layer in self.layers:
            x = layer(x, cos, sin, mask, cache)
        return self.norm(x)  # [B, T, D]
