"""Constrained decoding: every generated action text parses, by construction.

`ActionConstraint` compiles an action grammar (autoui.runtime.action_grammar) against a
tokenizer's vocabulary once: for every grammar state, which tokens may come next and
where each leads, as a dense boolean mask table [n_states, vocab] on the model's device,
plus the fewest tokens from each state to a complete action. `ConstraintState` tracks
one grammar state per sequence of a batch; each decode step costs one gather of mask
rows and one `masked_fill` (and a little Python near the token budget's end).

Guarantees: EOS is allowed only where the text so far is a complete action; with a token
budget (`remaining`), tokens that could not finish in time are masked, so generation
that stops at the budget still ends in a complete action.
"""
from __future__ import annotations

from collections import deque
from typing import Sequence

import numpy as np
import torch

from autoui.runtime.action_grammar import action_dfa
from autoui.runtime.dfa import CharDFA

UNREACHABLE = 1 << 30


class ConstraintError(ValueError):
    """A constraint that cannot be built or a token the constraint does not allow."""


def token_pieces(tokenizer) -> list[str | None]:
    """The text each token id contributes when decoded after other tokens (None: special/empty).

    Works with a `tokenizers.Tokenizer` or any wrapper exposing one as `.backend`
    (`autoui.model.tokenizer.ActionTokenizer`). Decoding each id after an anchor token
    keeps the leading spaces that some decoders strip from the first token.
    """
    tok = getattr(tokenizer, "backend", tokenizer)
    if not hasattr(tok, "decode_batch") or not hasattr(tok, "get_vocab_size"):
        raise ConstraintError(
            f"need a tokenizers.Tokenizer (or an object with .backend), got {type(tokenizer).__name__}")
    size = tok.get_vocab_size(with_added_tokens=True)
    special = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    anchor = next((i for i in range(size) if i not in special and tok.decode([i], skip_special_tokens=False)), None)
    if anchor is None:
        raise ConstraintError("the tokenizer has no ordinary token")
    prefix = tok.decode([anchor], skip_special_tokens=False)
    texts = tok.decode_batch([[anchor, i] for i in range(size)], skip_special_tokens=False)
    pieces: list[str | None] = []
    for i, text in enumerate(texts):
        piece = text[len(prefix):] if text.startswith(prefix) else None
        pieces.append(None if i in special or not piece else piece)
    return pieces


def _transitions(dfa: CharDFA, pieces: Sequence[str | None]) -> list[dict[int, int]]:
    """For every DFA state: {token id: next state} of the tokens whose whole piece is allowed.

    Walks a trie of the pieces from each state, so a rejected first character prunes every
    token starting with it (most states allow one character only).
    """
    trie: dict = {}
    for tid, piece in enumerate(pieces):
        if piece is not None:
            node = trie
            for ch in piece:
                node = node.setdefault(ch, {})
            node.setdefault(None, []).append(tid)  # key None: tokens ending here
    table = []
    for state in range(dfa.n_states):
        out: dict[int, int] = {}
        stack = [(trie, state)]
        while stack:
            node, s = stack.pop()
            for ch, child in node.items():
                if ch is None:
                    continue
                nxt = dfa.step(s, ch)
                if nxt >= 0:
                    for tid in child.get(None, ()):
                        out[tid] = nxt
                    stack.append((child, nxt))
        table.append(out)
    return table


def _distances(table: list[dict[int, int]], accepting: frozenset) -> list[int]:
    """Fewest tokens from each state to an accepting one (reverse BFS over token edges)."""
    back: list[set[int]] = [set() for _ in table]
    for s, row in enumerate(table):
        for t in set(row.values()):
            back[t].add(s)
    dist = [UNREACHABLE] * len(table)
    queue = deque(accepting)
    for s in accepting:
        dist[s] = 0
    while queue:
        t = queue.popleft()
        for s in back[t]:
            if dist[s] == UNREACHABLE:
                dist[s] = dist[t] + 1
                queue.append(s)
    return dist


class ActionConstraint:
    """An action grammar compiled against one vocabulary. Build once, share across requests.

    fmt: "autoui", "compact" or "any"; plan: True (required), False (forbidden), None (optional).
    """

    def __init__(self, pieces: Sequence[str | None], eos_id: int, fmt: str = "any", plan: bool | None = None,
                 device: str | torch.device = "cpu"):
        vocab = len(pieces)
        if not 0 <= eos_id < vocab:
            raise ConstraintError(f"eos_id {eos_id} is outside the vocabulary (size {vocab})")
        self.fmt, self.plan, self.eos_id, self.vocab_size = fmt, plan, eos_id, vocab
        self.dfa = dfa = action_dfa(fmt, plan)
        pieces = [None if i == eos_id else p for i, p in enumerate(pieces)]
        self.pieces = pieces  # each token's text (None: special), e.g. for autoui.runtime.copy_text
        table = _transitions(dfa, pieces)
        dist = _distances(table, dfa.accepting)
        if dist[0] == UNREACHABLE:
            raise ConstraintError(f"this vocabulary cannot spell any {fmt!r} action")
        # drop tokens into states the vocabulary cannot finish from: they would strand the sequence
        self.next = [{t: n for t, n in row.items() if dist[n] < UNREACHABLE} for row in table]
        self.dist = dist
        self.done_state = dfa.n_states  # after EOS: only EOS again (finished rows of a batch)
        masks = torch.zeros(dfa.n_states + 1, vocab, dtype=torch.bool)
        self._ids, self._next_dist = [], []
        for s, row in enumerate(self.next):
            ids = np.fromiter(row.keys(), dtype=np.int64, count=len(row))
            self._ids.append(ids)
            self._next_dist.append(np.fromiter((dist[n] for n in row.values()), dtype=np.int64, count=len(row)))
            masks[s, torch.from_numpy(ids)] = True
        masks[list(dfa.accepting), eos_id] = True
        masks[self.done_state, eos_id] = True
        self._max_next = [int(d.max()) if len(d) else 0 for d in self._next_dist]
        self.masks = masks.to(device)  # [n_states + 1, vocab]
        self._wide: dict[int, torch.Tensor] = {vocab: self.masks}

    @classmethod
    def from_tokenizer(cls, tokenizer, fmt: str = "any", plan: bool | None = None, eos_id: int | None = None,
                       device: str | torch.device = "cpu") -> "ActionConstraint":
        """Compile for a `tokenizers` tokenizer (or ActionTokenizer; its eos_id is used by default)."""
        eos = eos_id if eos_id is not None else getattr(tokenizer, "eos_id", None)
        if eos is None:
            raise ConstraintError("pass eos_id: the tokenizer does not say which id ends a sequence")
        return cls(token_pieces(tokenizer), int(eos), fmt, plan, device)

    def forced(self) -> dict[int, tuple[int, int]]:
        """{state: (token, next state)} for states where the grammar leaves exactly one token.

        EOS counts (it leads to `done_state`). Such a token needs no logits: the engine appends
        it directly ("jump-forward") and feeds runs of them to the model in one forward.
        """
        if not hasattr(self, "_forced"):
            out = {}
            for s, row in enumerate(self.next):
                eos_ok = s in self.dfa.accepting
                if eos_ok and not row:
                    out[s] = (self.eos_id, self.done_state)
                elif not eos_ok and len(row) == 1:
                    out[s] = next(iter(row.items()))
            self._forced = out
        return self._forced

    @property
    def min_new_tokens(self) -> int:
        """Fewest generated tokens (EOS included) that can form a complete action."""
        return self.dist[0] + 1

    def mask_table(self, width: int) -> torch.Tensor:
        """The mask table padded with False columns to `width` (models may pad their vocab)."""
        if width not in self._wide:
            if width < self.vocab_size:
                raise ConstraintError(f"logits have {width} columns, fewer than the vocabulary's {self.vocab_size}")
            pad = torch.zeros(self.masks.shape[0], width - self.vocab_size, dtype=torch.bool, device=self.masks.device)
            self._wide[width] = torch.cat([self.masks, pad], dim=1)
        return self._wide[width]

    def budget_row(self, state: int, remaining: int, width: int) -> torch.Tensor:
        """Allowed tokens of `state` when only `remaining` tokens (EOS included) may follow."""
        row = torch.zeros(width, dtype=torch.bool)
        if state == self.done_state or state in self.dfa.accepting:
            row[self.eos_id] = True
        if state != self.done_state:
            ids = self._ids[state][self._next_dist[state] <= remaining - 2]  # the token, the rest, then EOS
            row[torch.from_numpy(ids)] = True
        if not row.any():
            raise ConstraintError(f"{remaining} tokens cannot finish an action from grammar state {state} "
                                  f"(it needs {self.dist[state] + 1})")
        return row.to(self.masks.device)

    def start(self, batch: int) -> "ConstraintState":
        """Fresh per-sequence states for a batch of `batch` sequences."""
        return ConstraintState(self, batch)


class ConstraintState:
    """One grammar state per sequence; `mask_logits` before sampling, `advance` after."""

    def __init__(self, constraint: ActionConstraint, batch: int):
        self.constraint = constraint
        self.states = [0] * batch

    def __len__(self) -> int:
        return len(self.states)

    @property
    def finished(self) -> list[bool]:
        """Which sequences have emitted EOS."""
        return [s == self.constraint.done_state for s in self.states]

    def extend(self, n: int) -> None:
        """Add `n` new sequences at the end of the batch (requests joining)."""
        self.states.extend([0] * n)

    def keep(self, indices: Sequence[int]) -> None:
        """Keep only the sequences at `indices`, in that order (requests leaving)."""
        self.states = [self.states[i] for i in indices]

    def mask_logits(self, logits: torch.Tensor, remaining: int | Sequence[int] | None = None) -> torch.Tensor:
        """logits [B, V] -> a copy with disallowed tokens at -inf.

        remaining: how many tokens each sequence may still generate, this one and EOS
        included (an int for all); None for no budget.
        """
        if logits.dim() != 2 or logits.shape[0] != len(self.states):
            raise ConstraintError(f"logits must be [{len(self.states)}, V], got {list(logits.shape)}")
        allowed = self.allowed(logits.shape[1], remaining)
        return logits.masked_fill(~allowed.to(logits.device), float("-inf"))

    def allowed(self, width: int, remaining: int | Sequence[int] | None = None) -> torch.Tensor:
        """bool [B, width]: the tokens each sequence may emit next (`mask_logits` without the logits)."""
        c = self.constraint
        rows = torch.tensor(self.states, device=c.masks.device)
        allowed = c.mask_table(width).index_select(0, rows)  # [B, V] (much faster than bool fancy indexing)
        if remaining is not None:
            rem = [remaining] * len(self.states) if isinstance(remaining, int) else list(remaining)
            for b, (s, r) in enumerate(zip(self.states, rem)):
                if s != c.done_state and r - 2 < c._max_next[s]:  # only near the end of the budget
                    allowed[b] = c.budget_row(s, r, width)
        return allowed

    def advance(self, token_ids: Sequence[int] | torch.Tensor) -> None:
        """Move each sequence past its chosen token; a token the grammar forbids raises."""
        c = self.constraint
        ids = token_ids.tolist() if isinstance(token_ids, torch.Tensor) else list(token_ids)
        if len(ids) != len(self.states):
            raise ConstraintError(f"got {len(ids)} tokens for {len(self.states)} sequences")
        for b, (s, t) in enumerate(zip(self.states, ids)):
            if t == c.eos_id and (s == c.done_state or s in c.dfa.accepting):
                self.states[b] = c.done_state
                continue
            nxt = c.next[s].get(t) if s != c.done_state else None
            if nxt is None:
                raise ConstraintError(f"token {t} is not allowed in grammar state {s} (sequence {b})")
            self.states[b] = nxt
