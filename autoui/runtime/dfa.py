"""Minimal character DFAs compiled from the grammars of `autoui.runtime.grammar`.

Subset construction over the NFA, Moore partition refinement, and removal of states that
cannot reach acceptance. The alphabet is the characters the grammar names plus one
"other" symbol standing for every character it does not name.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from autoui.runtime.grammar import OTHER, GrammarError, Node, NFA


def _alphabet(nfa: NFA) -> list[str]:
    named = {c for edges in nfa.edges for chars, _ in edges for c in chars.chars}
    return sorted(named) + [OTHER]


def _closure(nfa: NFA, states) -> frozenset:
    seen, stack = set(states), list(states)
    while stack:
        for t in nfa.eps[stack.pop()]:
            if t not in seen:
                seen.add(t)
                stack.append(t)
    return frozenset(seen)


@dataclass
class CharDFA:
    """A minimal deterministic automaton over characters.

    `trans[s]` maps named characters to next states; `other[s]` is the next state for any
    character not in `alphabet` (-1: rejected). State 0 is the start.
    """

    trans: list[dict[str, int]]
    other: list[int]
    accepting: frozenset
    alphabet: frozenset

    @property
    def n_states(self) -> int:
        return len(self.trans)

    def step(self, state: int, ch: str) -> int:
        """Next state after `ch`, or -1 if `ch` is not allowed in `state`."""
        if ch in self.alphabet:
            return self.trans[state].get(ch, -1)
        return self.other[state]

    def walk(self, state: int, text: str) -> int:
        """State after `text` from `state`, or -1 as soon as a character is rejected."""
        for ch in text:
            state = self.step(state, ch)
            if state < 0:
                return -1
        return state

    def matches(self, text: str) -> bool:
        """True when the whole of `text` is in the language."""
        return self.walk(0, text) in self.accepting


def compile_grammar(node: Node) -> CharDFA:
    """Grammar -> NFA -> DFA (subset construction) -> minimal DFA without dead states."""
    nfa = NFA()
    start = nfa.new()
    accept = nfa.build(node, start)
    symbols = _alphabet(nfa)
    first = _closure(nfa, [start])
    index, sets, table = {first: 0}, [first], []
    while len(table) < len(sets):
        current = sets[len(table)]
        moves: dict[str, list[int]] = {}
        for s in current:
            for chars, t in nfa.edges[s]:
                for sym in (symbols if chars.negated else chars.chars):
                    if chars.matches(sym):
                        moves.setdefault(sym, []).append(t)
        row = {}
        for sym, moved in moves.items():
            target = _closure(nfa, moved)
            if target not in index:
                index[target] = len(sets)
                sets.append(target)
            row[sym] = index[target]
        table.append(row)
    accepting = {i for i, st in enumerate(sets) if accept in st}
    if not accepting:
        raise GrammarError("the grammar accepts no string")
    return _minimize(table, accepting, symbols)


def _minimize(table: list[dict[str, int]], accepting: set[int], symbols: list[str]) -> CharDFA:
    """Moore partition refinement, then drop states that cannot reach acceptance."""
    live = _coreachable(table, accepting)
    block = {s: (s in accepting) for s in live}
    edges = {s: sorted((sym, t) for sym, t in table[s].items() if t in live) for s in live}  # sparse rows
    while True:
        sig = {s: (block[s],) + tuple((sym, block[t]) for sym, t in edges[s]) for s in live}
        ids: dict[tuple, int] = {}
        new_block = {s: ids.setdefault(sig[s], len(ids)) for s in sorted(live)}
        if len(ids) == len(set(block.values())):
            block = new_block
            break
        block = new_block
    order: dict[int, int] = {}  # renumber blocks by their first state, so the start's block is 0
    for s in sorted(live):
        order.setdefault(block[s], len(order))
    n = len(order)
    trans: list[dict[str, int]] = [{} for _ in range(n)]
    other = [-1] * n
    for s in live:
        b = order[block[s]]
        for sym, t in table[s].items():
            if t in live:
                if sym == OTHER:
                    other[b] = order[block[t]]
                else:
                    trans[b][sym] = order[block[t]]
    return CharDFA(trans, other, frozenset(order[block[s]] for s in accepting if s in live),
                   frozenset(symbols) - {OTHER})


def _coreachable(table: list[dict[str, int]], accepting: set[int]) -> set[int]:
    back: list[list[int]] = [[] for _ in table]
    for s, row in enumerate(table):
        for t in row.values():
            back[t].append(s)
    seen, queue = set(accepting), deque(accepting)
    while queue:
        for s in back[queue.popleft()]:
            if s not in seen:
                seen.add(s)
                queue.append(s)
    if 0 not in seen:
        raise GrammarError("the grammar accepts no string")
    return seen
