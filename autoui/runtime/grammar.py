"""A small regular-grammar toolkit: grammar nodes and their NFA (`autoui.runtime.dfa`
turns it into a minimal character DFA).

Used to describe the action text formats (autoui.runtime.action_grammar) precisely
enough that a decoder can be constrained to them. Characters the grammar never names
explicitly all behave alike, so the DFA's alphabet is the named characters plus one
"other" symbol; free text (`Text`) can therefore accept any Unicode character.
"""
from __future__ import annotations

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


class NFA:
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
