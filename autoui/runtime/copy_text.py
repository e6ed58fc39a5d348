"""Typed text copied from the goal: an optional decoding constraint on top of the action grammar.

Goals usually quote what must be typed (`Enter "Kasey" into the text field`). A small
model often writes a plausible but wrong string instead (a name it memorised). With this
constraint, once the model has chosen a `type` action, the text it writes must be one of
the goal's quoted spans (as written, or upper/lower-cased where the goal asks for that case),
token by token; the model
still decides whether to type and which span. Off by default (`RuntimeOptions(
type_from_goal=True)`, `--type-from-goal`): goals that do not quote their text get no
restriction, and goals that quote something else (a button label) still let the model
choose it, so the option suits benchmark-style instructions more than free-form ones.

A goal that quotes several texts (`Enter the username "ann" and the password "x7"`) wants each
typed once: spans the episode has already typed are dropped from the candidates while others
remain (`untyped_quotes`); a goal with one span (`Enter "x7" into both fields`) keeps it.

Scope: the compact action format, after the plan (`... ; type TEXT`) or in a model that
writes no plan. The Auto-UI format is left unrestricted.
"""
from __future__ import annotations

import re
from typing import Sequence

import torch

from autoui.actions.compact import escape_text

_QUOTED = re.compile(r'"([^"\n]{1,200})"|\u201c([^\u201d\n]{1,200})\u201d')
_PLAN_END = " ; "


_UPPER = re.compile(r"\b(upper[- ]?case|capital letters|all caps)\b", re.IGNORECASE)
_LOWER = re.compile(r"\blower[- ]?case\b", re.IGNORECASE)


def goal_quotes(goal: str) -> tuple[str, ...]:
    """The quoted spans of `goal` (distinct, in order): as written, or in the case the goal asks for.

    "Type "tora" in all upper case letters" gives ("TORA",); without such words, ("tora",).
    """
    goal = goal or ""
    upper, lower = bool(_UPPER.search(goal)), bool(_LOWER.search(goal))
    out: list[str] = []
    for plain, curly in _QUOTED.findall(goal):
        span = plain or curly
        variants = ([span.upper()] if upper else []) + ([span.lower()] if lower else []) or [span]
        for variant in variants:
            if variant.strip() and variant not in out:
                out.append(variant)
    return tuple(out)


def untyped_quotes(goal: str, history: Sequence = ()) -> tuple[str, ...]:
    """`goal_quotes(goal)` without the spans already typed in `history` (actions of this episode),
    unless that leaves none: then all of them (a text may have to be typed twice)."""
    quotes = goal_quotes(goal)
    typed = {a.typed_text for a in history}
    return tuple(q for q in quotes if q not in typed) or quotes


def _decision(text: str, plan: bool | None) -> str | None:
    """The decision part of compact text so far, or None while it may still be the plan."""
    end = text.find(_PLAN_END)
    if end >= 0:
        return text[end + len(_PLAN_END):]
    return text if plan is False or not text.startswith(("point", "type", "back", "home", "enter", "done",
                                                          "impossible")) else None


class TypedTextFilter:
    """Token masks that keep a compact `type` action's text on one of a request's candidates."""

    def __init__(self, pieces: Sequence[str | None], eos_id: int, plan: bool | None = None):
        self.pieces, self.eos_id, self.plan = list(pieces), eos_id, plan
        self._by_first: dict[str, list[int]] = {}
        for tid, p in enumerate(self.pieces):
            if p and tid != eos_id:
                self._by_first.setdefault(p[0], []).append(tid)

    def text(self, ids: Sequence[int]) -> str:
        """The text of generated ids (special tokens and EOS contribute nothing)."""
        return "".join(self.pieces[i] or "" for i in ids if 0 <= i < len(self.pieces))

    def allowed(self, ids: Sequence[int], candidates: Sequence[str], width: int) -> torch.Tensor | None:
        """Bool mask [width] of tokens that keep the typed text on a candidate; None: no restriction here."""
        decision = _decision(self.text(ids), self.plan)
        if decision is None or not decision.startswith("type") or not candidates:
            return None
        targets = ["type " + escape_text(c) for c in candidates]
        live = [t for t in targets if t.startswith(decision)]
        if not live:
            return None  # the text already left every candidate (e.g. written before the filter applied)
        mask = torch.zeros(width, dtype=torch.bool)
        if decision in live:
            mask[self.eos_id] = True
        for target in live:
            rest = target[len(decision):]
            if not rest:
                continue
            for tid in self._by_first.get(rest[0], ()):
                if rest.startswith(self.pieces[tid]):
                    mask[tid] = True
        return mask
