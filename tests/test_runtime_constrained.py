"""Constrained action decoding: grammars accept exactly valid actions, and decoding with the
mask yields text that always parses, with real `tokenizers` BPE vocabularies."""
from __future__ import annotations


import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from autoui.actions import Action, ActionType, format_action, parse_action, parse_autoui, parse_compact
from autoui.runtime import ActionConstraint, ConstraintError, token_pieces
from autoui.runtime.action_grammar import action_dfa
from autoui.runtime.dfa import compile_grammar
from autoui.runtime.grammar import Text, alt, lit, rep, seq

ACTIONS = [
    Action.tap(0.2191, 0.5017), Action.tap(1.0, 0.0), Action.swipe((0.1, 0.2), (0.9, 0.3)), Action.scroll("left"),
    Action.type("hello world"), Action.type('a;b "q" \\ \n x'), Action.type("日本 ü"), Action.back(), Action.home(),
    Action.enter(), Action.complete(), Action.impossible(),
]
PLANS = [None, (ActionType.DUAL_POINT,), (ActionType.TYPE, ActionType.PRESS_ENTER, ActionType.STATUS_TASK_COMPLETE)]


def _bpe(vocab_size=600, seed_texts=()):
    corpus = [format_action(a, f, p) for a in ACTIONS for f in ("autoui", "compact") for p in PLANS]
    corpus += list(seed_texts)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus * 3, trainer)
    return tok


@pytest.fixture(scope="module")
def bpe():
    return _bpe()


@pytest.fixture(scope="module")
def constraints(bpe):
    eos = bpe.token_to_id("</s>")
    return {fmt: ActionConstraint.from_tokenizer(bpe, fmt, eos_id=eos) for fmt in ("compact", "autoui", "any")}


@pytest.mark.parametrize("fmt", ["compact", "autoui"])
def test_grammar_accepts_every_formatted_action(fmt):
    dfa = action_dfa(fmt)
    for action in ACTIONS:
        for plan in PLANS:
            text = format_action(action, fmt, plan)
            assert dfa.matches(text), text
            assert action_dfa("any").matches(text)
            assert action_dfa(fmt, plan=plan is not None).matches(text)
            assert not action_dfa(fmt, plan=plan is None).matches(text)


@pytest.mark.parametrize("text", [
    "tap 0219 5", "tap 1001 3", "tap 5", "type ", "back ", "scroll sideways", "type Action Decision x",
    'type say "action_type"', "tap 1 2 ; back", "point ; ", "type a;b",
    '"action_type": "TYPE", "touch_point": "[-1.0, -1.0]", "lift_point": "[-1.0, -1.0]", "typed_text": "Action Plan"',
    '"action_type": "DUAL_POINT", "touch_point": "[1.5, 0.2]", "lift_point": "[0.5, 0.2]", "typed_text": ""',
    '"action_type": "PRESS_BACK", "touch_point": "[-1.0, -1.0]", "lift_point": "[-1.0, -1.0]", "typed_text": "x"',
])
def test_grammar_rejects_invalid_text(text):
    assert not action_dfa("any").matches(text)


def test_text_node_avoids_words_and_handles_escapes():
    dfa = compile_grammar(seq(lit("<"), Text(exclude=">\\", escape="\\", escaped=">\\", avoid=("abc", "bd"),
                                             min_len=1), lit(">")))
    for good in ("<x>", "<ab>", "<aabx>", "<\\>ab\\>c>", "<b\\>d>", "<é>"):
        assert dfa.matches(good), good
    for bad in ("<>", "<abc>", "<xxbd>", "<aabcx>", "<\\x>", "<a>b>"):
        assert not dfa.matches(bad), bad


def test_dfa_is_minimal_for_a_shared_suffix():
    dfa = compile_grammar(alt(seq(lit("ab"), lit("xyz")), seq(lit("cd"), lit("xyz"))))
    assert dfa.n_states == 7  # start, a|c, b|d, x, y, z, and the shared tail is not duplicated
    assert dfa.matches("abxyz") and dfa.matches("cdxyz") and not dfa.matches("adxyz")
    dfa2 = compile_grammar(rep(lit("ab"), 1, None))
    assert dfa2.matches("ababab") and not dfa2.matches("aba")


def test_token_pieces_concatenate_to_the_decoded_text(bpe):
    pieces = token_pieces(bpe)
    assert pieces[bpe.token_to_id("</s>")] is None
    for action in ACTIONS:
        text = format_action(action, "autoui", PLANS[2])
        ids = bpe.encode(text).ids
        assert "".join(pieces[i] for i in ids) == text == bpe.decode(ids)


def _sample(constraint, tok, batch, max_new, seed, greedy_targets=None):
    """Decode `batch` sequences with random logits (or logits favouring target ids) under the constraint."""
    g = torch.Generator().manual_seed(seed)
    state = constraint.start(batch)
    out = [[] for _ in range(batch)]
    for step in range(max_new):
        logits = torch.randn(batch, constraint.vocab_size + 5, generator=g) * 4  # model vocab padded by 5
        if greedy_targets is not None:
            for b, target in enumerate(greedy_targets):
                nxt = target[step] if step < len(target) else constraint.eos_id
                logits[b, nxt] += 100.0
        masked = state.mask_logits(logits, max_new - step)
        if greedy_targets is not None:
            ids = masked.argmax(-1)
        else:
            ids = torch.multinomial(masked.softmax(-1), 1, generator=g)[:, 0]
        assert ids.max() < constraint.vocab_size
        state.advance(ids)
        for b, i in enumerate(ids.tolist()):
            if i != constraint.eos_id and not (out[b] and out[b][-1] == constraint.eos_id):
                out[b].append(i)
        if all(state.finished):
            break
    assert all(state.finished)
    return [tok.decode(ids) for ids in out]


@pytest.mark.parametrize("fmt,max_new", [("compact", 24), ("autoui", 110), ("any", 60)])
def test_random_logits_always_parse(constraints, bpe, fmt, max_new):
    texts = _sample(constraints[fmt], bpe, batch=48, max_new=max_new, seed=1)
    parser = {"compact": parse_compact, "autoui": parse_autoui}.get(fmt, parse_action)
    kinds = set()
    for text in texts:
        parsed = parse_action(text)  # raises on any invalid output
        assert parser(text).action == parsed.action
        kinds.add(parsed.action.kind)
    assert len(kinds) >= 3  # the mask does not collapse sampling onto one action


def test_tight_budget_still_finishes(constraints, bpe):
    c = constraints["autoui"]
    texts = _sample(c, bpe, batch=16, max_new=c.min_new_tokens + 2, seed=3)
    assert all(parse_autoui(t) for t in texts)
    with pytest.raises(ConstraintError, match="cannot finish"):
        c.start(1).mask_logits(torch.zeros(1, c.vocab_size), c.min_new_tokens - 1)


@pytest.mark.parametrize("fmt", ["compact", "autoui"])
def test_greedy_reproduces_a_favoured_valid_string(constraints, bpe, fmt):
    texts = [format_action(a, fmt, p) for a, p in zip(ACTIONS, PLANS * 4)]
    targets = [bpe.encode(t).ids for t in texts]
    assert _sample(constraints[fmt], bpe, len(texts), 120, seed=0, greedy_targets=targets) == texts


def test_disallowed_token_raises(constraints, bpe):
    c = constraints["compact"]
    state = c.start(2)
    with pytest.raises(ConstraintError, match="not allowed"):
        state.advance([bpe.token_to_id("Z"), bpe.token_to_id("b")])
    with pytest.raises(ConstraintError, match="not allowed"):
        c.start(1).advance([c.eos_id])  # EOS before any action
    state = c.start(1)
    state.advance(bpe.encode("back").ids)
    state.advance([c.eos_id])
    assert state.finished == [True]
    state.extend(1)
    state.keep([1])
    assert state.finished == [False]


def test_action_tokenizer_with_location_tokens():
    """The project's tokenizer (digits split, " 0".." 1000" added tokens) works unchanged."""
    from autoui.model.tokenizer import ActionTokenizer

    corpus = [format_action(a, "compact", p) for a in ACTIONS for p in PLANS] * 3
    tok = ActionTokenizer.build(corpus, vocab_size=300, coords="loc", min_frequency=1)
    c = ActionConstraint.from_tokenizer(tok, "compact")
    assert c.eos_id == tok.eos_id
    texts = _sample(c, tok, batch=32, max_new=16, seed=5)
    assert all(parse_compact(t) for t in texts)
    target = [tok.encode("tap 219 502")]
    assert len(target[0]) == 3 and _sample(c, tok, 1, 16, seed=0, greedy_targets=target) == ["tap 219 502"]
