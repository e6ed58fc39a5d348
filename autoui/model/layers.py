"""Small building blocks shared by the model files: activations, RMSNorm, RoPE, SwiGLU MLP.

Numerics follow HF transformers' Llama/SigLIP/CLIP code (norm statistics and RoPE angles in
fp32, cast back to the activation dtype) so that weights loaded from those checkpoints give
the same outputs.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """CLIP's sigmoid approximation of GELU."""
    return x * torch.sigmoid(1.702 * x)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """SigLIP's `gelu_pytorch_tanh`."""
    return F.gelu(x, approximate="tanh")


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu_pytorch_tanh": gelu_tanh,
    "quick_gelu": quick_gelu,
    "gelu": F.gelu,
    "silu": F.silu,
}


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation function called `name` (HF spelling)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}") from None


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned scale (Llama's `LlamaRMSNorm`)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)  # one op (decode is dispatch-bound)
        # statistics in fp32: bf16 squares lose too much precision over wide rows
        h = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)  # x * rsqrt(mean(x^2) + eps)
        return self.weight * h.to(x.dtype)


def rope_cos_sin(position_ids: torch.Tensor, head_dim: int, theta: float,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE tables for `position_ids` [B, T] -> (cos, sin_rot), each [B, 1, T, head_dim].

    HF's half-split RoPE is x * cos + rotate_half(x) * sin, with rotate_half(x) =
    cat(-x2, x1). Here the sign lives in the table, sin_rot = cat(-sin, sin) over the two
    halves, so that `apply_rope` needs only a roll (cat(x2, x1)): the same numbers in
    fewer ops. Computed per call from the positions (no buffers), so the model can be built
    on the `meta` device and loaded with `assign=True` without re-initialising anything.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64,
                                             device=position_ids.device).float() / head_dim))  # [D/2]
    freqs = position_ids.float()[..., None] * inv_freq  # [B, T, D/2]
    cos, sin = freqs.cos(), freqs.sin()
    cos = torch.cat((cos, cos), dim=-1)  # [B, T, D]
    sin_rot = torch.cat((-sin, sin), dim=-1)  # [B, T, D]
    return cos.to(dtype)[:, None], sin_rot.to(dtype)[:, None]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin_rot: torch.Tensor) -> torch.Tensor:
    """Rotate `x` [B, H, T, D] by the tables of `rope_cos_sin` [B, 1, T, D] (HF's half-split layout)."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), sin_rot)


class FusedLinears:
    """Several `nn.Linear`s that read the same input, run as one matmul on CPU when not training.

    Serving calls it once per layer and token, where one matmul instead of two or three
    saves dispatches (CPU decode is overhead-bound). The concatenated weight is a copy,
    rebuilt whenever a member's weight changes (new storage or an in-place update), so it
    never goes stale. With gradients enabled, or on GPUs (where the copy would cost memory
    that matters more), the layers run one by one, exactly as built.
    """

    def __init__(self, *linears: nn.Linear):
        self.linears = linears
        self.sizes = [lin.out_features for lin in linears]
        self._key: tuple = ()
        self._weight: torch.Tensor | None = None
        self._bias: torch.Tensor | None = None

    def _params(self) -> list[torch.Tensor]:
        return [p for lin in self.linears for p in (lin.weight, lin.bias) if p is not None]

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if torch.is_grad_enabled() or x.device.type != "cpu":
            return tuple(lin(x) for lin in self.linears)
        key = tuple((p.data_ptr(), p._version, p.dtype) for p in self._params())
        if key != self._key:
            self._weight = torch.cat([lin.weight for lin in self.linears])
            biases = [lin.bias for lin in self.linears]
            self._bias = torch.cat(biases) if all(b is not None for b in biases) else None
            self._key = key
        return F.linear(x, self._weight, self._bias).split(self.sizes, dim=-1)


class SwiGLU(nn.Module):
    """Llama's gated MLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)
        object.__setattr__(self, "_gate_up", FusedLinears(self.gate_proj, self.up_proj))  # not a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, T, D]
        gate, up = self._gate_up(x)
        return self.down_proj(F.silu(gate) * up)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Initialise a freshly built module for training from scratch.

    Linear/conv/embedding weights ~ N(0, std), biases 0, norms 1/0. PyTorch's default
    N(0, 1) embeddings would make a tied lm_head start with huge logits. Vision position
    tables start from 2D sin-cos (`VisionEmbeddings.init_positions`).
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
        elif isinstance(m, (nn.LayerNorm, RMSNorm)):
            nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    for m in module.modules():  # modules with their own start (after the generic pass above)
        if hasattr(m, "init_positions"):
            m.init_positions()

