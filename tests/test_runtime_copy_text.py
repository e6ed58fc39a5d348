"""Typed text copied from the goal (autoui.runtime.copy_text) and its use in the engine."""
from __future__ import annotations

import torch

from autoui.actions import Action, format_action, parse_compact
from autoui.model import AutoUIModel, load_preset
from autoui.model.tokenizer import ActionTokenizer
from autoui.runtime import ActionConstraint
from autoui.runtime.copy_text import TypedTextFilter, goal_quotes, untyped_quotes
from autoui.runtime.engine import Engine, EngineConfig, Request


def test_goal_quotes_follow_the_case_the_goal_asks_for():
    assert goal_quotes('Enter the username "chas" and the password "fcK" into the fields.') == ("chas", "fcK")
    assert goal_quotes('Type "tora" in all upper case letters.') == ("TORA",)
    assert goal_quotes('Type \u201cBob Ray\u201d in lowercase.') == ("bob ray",)
    assert goal_quotes('Enter "x" and "x" again') == ("x",)
    assert goal_quotes("Open the settings app") == () and goal_quotes("") == ()


def test_spans_already_typed_leave_the_candidates_while_others_remain():
    from autoui.actions import Action, ActionType

    goal = 'Enter the username "chas" and the password "fcK" into the fields.'
    tap = Action(ActionType.DUAL_POINT, touch_yx=(0.5, 0.5), lift_yx=(0.5, 0.5))
    typed = Action(ActionType.TYPE, typed_text="chas")
    assert untyped_quotes(goal) == ("chas", "fcK")
    assert untyped_quotes(goal, [tap, typed, tap]) == ("fcK",)
    assert untyped_quotes(goal, [typed, Action(ActionType.TYPE, typed_text="fcK")]) == ("chas", "fcK")  # all typed
    assert untyped_quotes('Enter "x7" into both text fields.', [typed, Action(ActionType.TYPE, typed_text="x7")]) == ("x7",)
    assert untyped_quotes("Open the settings app", [typed]) == ()


def _tokenizer():
    corpus = [format_action(a, "compact", plan=p) for a, p in (
        (Action.tap(0.2, 0.5), None), (Action.type("hello there"), None), (Action.type("Kasey"), None),
        (Action.back(), None), (Action.type("a;b"), None))] * 5
    return ActionTokenizer.build(corpus, vocab_size=300, min_frequency=1)


def test_filter_allows_only_continuations_of_a_candidate():
    tok = _tokenizer()
    c = ActionConstraint.from_tokenizer(tok, "compact")
    f = TypedTextFilter(c.pieces, c.eos_id, c.plan)
    width = c.vocab_size

    def allowed_text(prefix: str, cands):
        mask = f.allowed(tok.encode(prefix), cands, width)
        return None if mask is None else {c.pieces[i] if i != c.eos_id else "<eos>" for i in mask.nonzero().flatten().tolist()}

    assert allowed_text("type ; tap 2", ["Kasey"]) is None  # not typing: no restriction
    assert allowed_text("type", ["Kasey"]) is None  # still possibly the plan ("type ; ...")
    first = allowed_text("type ; type", ["Kasey"])
    assert first and all("type Kasey".startswith("type" + p) for p in first)
    assert allowed_text("type ; type Kasey", ["Kasey", "Kasey Jones"]) >= {"<eos>"}
    assert "<eos>" not in allowed_text("type ; type Kas", ["Kasey"])
    assert allowed_text("type ; type Zed", ["Kasey"]) is None  # already off every candidate: the grammar decides
    semi = allowed_text("type ; type a", ["a;b"])  # candidates are matched in their escaped form
    assert semi and all("type a\\;b".startswith("type a" + p) for p in semi)
    no_plan = TypedTextFilter(c.pieces, c.eos_id, plan=False)  # a model that writes no plan
    assert no_plan.allowed(tok.encode("type"), ["Kasey"], width) is not None


def test_engine_types_a_candidate_whatever_the_model_prefers():
    tok = _tokenizer()
    torch.manual_seed(0)
    model = AutoUIModel(load_preset("tiny").with_tokenizer(tok)).eval()
    c = ActionConstraint.from_tokenizer(tok, "compact", plan=False)
    cfg = model.config
    g = torch.Generator().manual_seed(3)
    # force the decision "type": feed it as the prompt's end, so the model continues the text
    prompt = [cfg.bos_token_id] + [cfg.image_token_id] * cfg.num_image_tokens + tok.encode("x")
    px = torch.randn(3, cfg.image_size, cfg.image_size, generator=g)
    engine = Engine(model, EngineConfig(max_batch=2, max_seq_len=128, max_new_tokens=24, prefill_dtype="same"),
                    constraint=c)
    for cands in (("Kasey",), ("hello there", "Kasey")):
        outs = []
        for _ in range(3):
            req = Request(prompt, px, type_candidates=cands)
            req.tokens = tok.encode("type")  # as if the model had chosen to type
            req.grammar_state = _state_after(c, req.tokens)
            engine.submit(req)
            while engine.waiting or engine.active:
                engine.step()
            outs.append(parse_compact(tok.decode(req.tokens)).action)
        assert all(a.typed_text in cands for a in outs)
    free = engine.generate([Request(prompt, px)])[0]  # without candidates nothing changes
    parse_compact(tok.decode(free))


def _state_after(c: ActionConstraint, ids) -> int:
    s = 0
    for t in ids:
        s = c.next[s][t]
    return s
