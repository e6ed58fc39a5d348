"""`CacheView`: one forward pass of some sequences through a KV cache.

It implements the model's `AttentionCache` protocol. Everything that depends only on the
step (write positions, the visibility mask, which slots to read) is computed once here
and reused by every layer. Layers must call `attend` in order 0..n_layers-1; after the
last one the slots' lengths advance by their new-token counts and the view is spent, so
lengths can never drift from what was written (a second pass needs a new view).
"""
from __future__ import annotations

import torch

from autoui.runtime.cache.config import CacheError, CacheFullError


class CacheView:
    """Bound to `slots` for one forward; built by `KVCache.view`.

    Attributes the model may use: `position_ids(T)` ([B, T] RoPE positions of the new
    tokens), `start` ([B] tokens cached before this step), `new_lens` ([B]).
    """

    def __init__(self, cache, slots: list[int], new_lens: list[int]):
        cfg = cache.config
        if not slots:
            raise CacheError("a view needs at least one slot")
        if len(new_lens) != len(slots) or min(new_lens) < 1:
            raise CacheError(f"new_lens {new_lens} must give >= 1 new token for each of the {len(slots)} slots")
        start = cache.lengths[slots].clone()  # [B] host
        end = start + torch.tensor(new_lens)
        over = [(s, int(e)) for s, e in zip(slots, end) if e > cfg.max_seq_len]
        if over:
            raise CacheFullError(f"(slot, length) {over} would exceed max_seq_len={cfg.max_seq_len}")
        dev = cfg.device
        self.cache, self.slots, self.n_layers = cache, slots, cfg.n_layers
        self.T, self.max_len = max(new_lens), int(end.max())
        self.new_lens = new_lens
        self.start = start.to(dev)
        self.k_len = end.to(dev)  # [B] keys visible after this step's writes
        self.uniform = all(n == self.T for n in new_lens)
        self._start_host, self._end_host = start, end
        if self.uniform and self.T == 1:  # decode: one token each, no per-token index work
            b_idx, t_idx = torch.arange(len(slots)), torch.zeros(len(slots), dtype=torch.long)
        else:
            b_idx = torch.repeat_interleave(torch.arange(len(slots)), torch.tensor(new_lens))  # [N] which sequence
            t_idx = torch.cat([torch.arange(n) for n in new_lens])  # [N] which new token
        self._b_idx, self._t_idx = b_idx.to(dev), t_idx.to(dev)
        self.write_slot = torch.tensor(slots)[b_idx].to(dev)  # [N]
        self.write_pos = (start[b_idx] + t_idx).to(dev)  # [N]
        self.slot_index = torch.tensor(slots, device=dev)  # [B]
        contiguous = slots == list(range(slots[0], slots[0] + len(slots)))
        # contiguous slots are read through a view of the buffers, others are gathered (a copy)
        self.selection = slice(slots[0], slots[0] + len(slots)) if contiguous else self.slot_index
        self._masks: dict[int, tuple[str, torch.Tensor | None]] = {}
        self._next_layer = 0
        self.fused = None  # chosen by the backend at the first attend (needs the query length)

    @property
    def done(self) -> bool:
        """True once the last layer ran and lengths advanced."""
        return self._next_layer == self.n_layers

    def position_ids(self, T: int | None = None) -> torch.Tensor:
        """[B, T] positions of the new tokens (padding positions continue past each sequence)."""
        T = self.T if T is None else T
        return self.start[:, None] + torch.arange(T, device=self.start.device)[None, :]

    def mask(self, T: int) -> tuple[str, torch.Tensor | None]:
        """How queries see keys for a T-token forward: ("none" | "causal" | "explicit", mask).

        "none": every query sees all `max_len` keys (decode of equal-length sequences);
        "causal": plain top-left causal (prefill from empty, equal lengths); "explicit": a
        bool mask [B, 1, T, max_len], True = visible (key j < k_len[b] and j <= start[b] + t).
        """
        if T not in self._masks:
            same_end = bool((self._end_host == self.max_len).all())
            if T == 1 and same_end:
                self._masks[T] = ("none", None)
            elif self.uniform and T == self.T and bool((self._start_host == 0).all()):
                self._masks[T] = ("causal", None)
            else:
                j = torch.arange(self.max_len, device=self.start.device)  # [L]
                q_pos = self.position_ids(T)  # [B, T]
                visible = (j[None, None, :] <= q_pos[:, :, None]) & (j[None, None, :] < self.k_len[:, None, None])
                self._masks[T] = ("explicit", visible[:, None])  # [B, 1, T, L]
        return self._masks[T]

    def attend(self, layer_idx: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Write the new k/v of `layer_idx` and attend (the `AttentionCache` protocol)."""
        if self.done:
            raise CacheError("this view's forward already finished; make a new view for the next forward")
        if layer_idx != self._next_layer:
            raise CacheError(f"layers must attend in order 0..{self.n_layers - 1}: expected {self._next_layer}, "
                             f"got {layer_idx}")
        self._check_shapes(q, k, v)
        if self.uniform and self.T == 1:  # decode: the new k/v are just the single token's
            k_new, v_new = k[:, :, 0], v[:, :, 0]  # [B, Hkv, D]
        else:
            k_new = k.transpose(1, 2)[self._b_idx, self._t_idx]  # [N, Hkv, D]
            v_new = v.transpose(1, 2)[self._b_idx, self._t_idx]
        self.cache._write(layer_idx, self.write_slot, self.write_pos, k_new, v_new)
        out = self.cache.backend.attend(self.cache, layer_idx, q, self)  # [B, Hq, T, D]
        self._next_layer += 1
        if self.done:
            self.cache.lengths[self.slots] = self._end_host
        return out

    def _check_shapes(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        cfg = self.cache.config
        B = len(self.slots)
        want_kv = (B, cfg.n_kv_heads, q.shape[2] if q.dim() == 4 else -1, cfg.head_dim)
        if q.dim() != 4 or tuple(k.shape) != want_kv or tuple(v.shape) != want_kv:
            raise CacheError(f"expected k, v of shape [B, Hkv, T, D] = {list(want_kv)} and q [B, Hq, T, D]; "
                             f"got q {list(q.shape)}, k {list(k.shape)}, v {list(v.shape)}")
        if q.shape[0] != B or q.shape[3] != cfg.head_dim or q.shape[1] % cfg.n_kv_heads != 0:
            raise CacheError(f"q {list(q.shape)} does not fit {B} sequences with {cfg.n_kv_heads} kv heads of "
                             f"size {cfg.head_dim}")
        if q.shape[2] < self.T:
            raise CacheError(f"the forward has {q.shape[2]} tokens but the view expects up to {self.T}")
