"""The action text formats of `autoui.actions` as regular grammars.

Every string these grammars accept parses with `autoui.actions.parse_action` (and with
its format's own parser); the tests check this on random samples. They are a little
stricter than the parsers: canonical numbers only (compact 0..1000 without leading
zeros; Auto-UI "0.dddd" with 1-4 decimals or "1.0"), "[-1.0, -1.0]" and empty text
wherever Auto-UI's own output has them, and typed text that cannot imitate a marker the
parsers search for.
"""
from __future__ import annotations

from functools import lru_cache

from autoui.actions import ActionType
from autoui.actions.compact import PLAN_WORDS
from autoui.runtime.dfa import CharDFA, compile_grammar
from autoui.runtime.grammar import Node, Text, alt, lit, one_of, opt, rep, seq

FORMAT_CHOICES = ("autoui", "compact", "any")
MAX_PLAN = 4  # the current action and up to 3 future ones, as in Auto-UI's targets

_DIGIT = one_of("0123456789")
_MARKERS = ('"action_type"', "Action Decision", "Action Plan")  # what parse_action/parse_autoui search for


def _compact_number() -> Node:
    # 0..1000 without leading zeros
    return alt(lit("0"), seq(one_of("123456789"), rep(_DIGIT, 0, 2)), lit("1000"))


def compact_decision() -> Node:
    """tap Y X | swipe Y1 X1 Y2 X2 | scroll DIR | type TEXT | back | home | enter | done | impossible."""
    n, sp = _compact_number(), lit(" ")
    text = Text(exclude="\\\n;", escape="\\", escaped="\\n;", avoid=_MARKERS, min_len=1)
    return alt(
        seq(lit("tap "), n, sp, n),
        seq(lit("swipe "), n, sp, n, sp, n, sp, n),
        seq(lit("scroll "), alt(*(lit(d) for d in ("up", "down", "left", "right")))),
        seq(lit("type "), text),
        *(lit(w) for w in ("back", "home", "enter", "done", "impossible")),
    )


def compact_plan() -> Node:
    """`word word ... ; ` in front of the decision (1..MAX_PLAN plan words)."""
    word = alt(*(lit(w) for w in PLAN_WORDS.values()))
    return seq(word, rep(seq(lit(" "), word), 0, MAX_PLAN - 1), lit(" ; "))


def _autoui_point(real: bool) -> Node:
    if not real:
        return lit('"[-1.0, -1.0]"')
    coord = alt(seq(lit("0."), rep(_DIGIT, 1, 4)), lit("1.0"))
    return seq(lit('"['), coord, lit(", "), coord, lit(']"'))


def autoui_decision() -> Node:
    """`"action_type": "NAME", "touch_point": ..., "lift_point": ..., "typed_text": "..."` per type."""
    options = []
    for atype in ActionType:
        gesture = atype == ActionType.DUAL_POINT
        text = Text(exclude='"\\', avoid=("Action Plan",), min_len=1) if atype == ActionType.TYPE else lit("")
        options.append(seq(
            lit(f'"action_type": "{atype.name}", "touch_point": '), _autoui_point(gesture),
            lit(', "lift_point": '), _autoui_point(gesture), lit(', "typed_text": "'), text, lit('"')))
    return alt(*options)


def autoui_plan() -> Node:
    """`Action Plan: [NAME,NAME] ; Action Decision: ` in front of the decision."""
    name = alt(*(lit(t.name) for t in ActionType))
    return seq(lit("Action Plan: ["), name, rep(seq(lit(","), name), 0, MAX_PLAN - 1), lit("] ; Action Decision: "))


def _with_plan(plan_node: Node, decision: Node, plan: bool | None) -> Node:
    if plan is None:
        return seq(opt(plan_node), decision)
    return seq(plan_node, decision) if plan else decision


@lru_cache(maxsize=None)
def action_dfa(fmt: str = "any", plan: bool | None = None) -> CharDFA:
    """The character DFA of one format ("autoui", "compact" or "any" = either).

    plan: True = the plan prefix is required, False = forbidden, None = optional.
    """
    if fmt not in FORMAT_CHOICES:
        raise ValueError(f"fmt must be one of {FORMAT_CHOICES}, got {fmt!r}")
    if plan not in (None, True, False):
        raise ValueError(f"plan must be True, False or None, got {plan!r}")
    compact = _with_plan(compact_plan(), compact_decision(), plan)
    autoui = _with_plan(autoui_plan(), autoui_decision(), plan)
    node = {"compact": compact, "autoui": autoui, "any": alt(compact, autoui)}[fmt]
    return compile_grammar(node)
