"""A small regular-grammar toolkit: grammar nodes -> NFA -> minimal character DFA.

Used to describe the action text formats (autoui.runtime.action_grammar) precisely
enough that a decoder can be constrained to them. Characters the grammar never names
explicitly all behave alike, so the DFA's alphabet is the named characters plus one
"other" symbol; free text (`Text`) can therefore accept any Unicode character.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

OTHER = ""  # the symbol standing for every character the grammar does not name


class GrammarError(ValueError):
    """A grammar that cannot be compiled (empty language, bad repetition bounds, ...)."""


class Node:
    """Base of the grammar nodes."""


@dataclass(frozen=True)
class Chars(Node):
    """One character from `chars` (or, when `negated`, any character not in `chars`)."""

    chars: frozenset
    negated: bool = False

    def matches(self, symbol: str) -> bool:
        if symbol == OTHER:
            return self.negated
        return (symbol in self.chars) != self.negated


@dataclass(frozen=True)
class Seq(Node):
    parts: tuple


@dataclass(frozen=True)
class Alt(Node):
    options: tuple


@dataclass(frozen=True)
class Repeat(Node):
    node: Node
    lo: int
    hi: int | None  # None = unbounded


@dataclass(frozen=True)
class Text(Node):
    """Free text: characters not in `exclude`, `escape` + one of `escaped` as a pair, at least
    `min_len` units, and never containing any string of `avoid` as a substring (so text cannot
    imitate a marker a parser searches for)."""

    exclude: str
    escape: str = ""
    escaped: str = ""
    avoid: tuple = ()
    min_len: int = 0


def lit(text: str) -> Node:
    """The literal string `text`."""
    return Seq(tuple(Chars(frozenset(c)) for c in text))


def one_of(chars: str) -> Chars:
    return Chars(frozenset(chars))


def seq(*parts: Node) -> Seq:
    return Seq(tuple(parts))


def alt(*options: Node) -> Alt:
    return Alt(tuple(options))


def opt(node: Node) -> Repeat:
    return Repeat(node, 0, 1)


def rep(node: Node, lo: int, hi: int | None) -> Repeat:
    if lo < 0 or (hi is not None and hi < lo):
        raise GrammarError(f"bad repetition bounds {lo}..{hi}")
    return Repeat(node, lo, hi)


class _NFA:
    """Thompson construction: epsilon edges plus (Chars, target) edges."""

    def __init__(self) -> None:
        self.eps: list[list[int]] = []
        self.edges: list[list[tuple[Chars, int]]] = []

    def new(self) -> int:
        self.eps.append([])
        self.edges.append([])
        return len(self.eps) - 1

    def build(self, node: Node, start: int) -> int:
        """Add `node` starting at state `start`; return its end state."""
        if isinstance(node, Chars):
            end = self.new()
            self.edges[start].append((node, end))
            return end
        if isinstance(node, Seq):
            for part in node.parts:
                start = self.build(part, start)
            return start
        if isinstance(node, Alt):
            end = self.new()
            for option in node.options:
                s = self.new()
                self.eps[start].append(s)
                self.eps[self.build(option, s)].append(end)
            return end
        if isinstance(node, Repeat):
            return self._repeat(node, start)
        if isinstance(node, Text):
            return self._text(node, start)
        raise GrammarError(f"unknown grammar node {node!r}")

    def _repeat(self, node: Repeat, start: int) -> int:
        for _ in range(node.lo):
            start = self.build(node.node, start)
        if node.hi is None:  # Kleene star: loop state is both entry and exit
            loop = self.new()
            self.eps[start].append(loop)
            self.eps[self.build(node.node, loop)].append(loop)
            return loop
        exits = [start]
        for _ in range(node.hi - node.lo):
            start = self.build(node.node, start)
            exits.append(start)
        end = self.new()
        for s in exits:
            self.eps[s].append(end)
        return end

    def _text(self, node: Text, start: int) -> int:
        """Embed the free-text automaton: state = (longest suffix that starts an avoided word,
        units so far capped at min_len, escape pending)."""
        if any(node.escape and node.escape in w for w in node.avoid):
            raise GrammarError("the escape character must not occur in an avoided word")
        prefixes = {w[:i] for w in node.avoid for i in range(len(w))}
        word_chars = frozenset(c for w in node.avoid for c in w) - set(node.exclude)
        named = frozenset(node.exclude) | word_chars | frozenset(node.escape)

        def after(prefix: str, c: str) -> str | None:
            s = prefix + c
            if any(s.endswith(w) for w in node.avoid):
                return None
            while s not in prefixes:
                s = s[1:]
            return s

        ids: dict[tuple, int] = {}
        end = self.new()

        def state(key: tuple) -> int:
            if key not in ids:
                ids[key] = self.new()
                todo.append(key)
                if key[1] >= node.min_len and not key[2]:
                    self.eps[ids[key]].append(end)
            return ids[key]

        todo: list[tuple] = []
        self.eps[start].append(state(("", 0, False)))
        while todo:
            key = todo.pop()
            prefix, count, pending = key
            src, nxt = ids[key], min(count + 1, node.min_len)
            if pending:
                for c in node.escaped:
                    target = after("", c) if c in word_chars else ""
                    if target is not None:
                        self.edges[src].append((Chars(frozenset(c)), state((target, nxt, False))))
                continue
            for c in word_chars:
                target = after(prefix, c)
                if target is not None:
                    self.edges[src].append((Chars(frozenset(c)), state((target, nxt, False))))
            self.edges[src].append((Chars(named, negated=True), state(("", nxt, False))))
            if node.escape:
                self.edges[src].append((Chars(frozenset(node.escape)), state(("", count, True))))
        return end


def _alphabet(nfa: _NFA) -> list[str]:
    named = {c for edges in nfa.edges for chars, _ in edges for c in chars.chars}
    return sorted(named) + [OTHER]


def _closure(nfa: _NFA, states) -> frozenset:
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
    nfa = _NFA()
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
