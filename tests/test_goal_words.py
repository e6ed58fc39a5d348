"""The goal-word loss: which goal tokens name the tapped text, which patches are its box, and
that the loss is -log of the head's own attention mass on that box."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from autoui.actions import Action
from autoui.data.samples import Sample
from autoui.train.box_text import box_patches
from autoui.train.config import TrainConfig, TrainConfigError
from autoui.train.examples import BatchCollator, ExampleBuilder
from autoui.train.goal_words import GoalWordLoss, named_span, tapped_box
from autoui.train.grounding import GroundingSpec, tap_image_token
from tests.test_grounding import _full_head_logits, check_empty_batch, model, tok, train_aux  # noqa: F401 (fixtures)

# y, x, h, w: a page-sized container, the word "lorem" (tapped), the word "ipsum"
BOXES = np.array([[0.0, 0.0, 1.0, 1.0], [0.30, 0.10, 0.10, 0.30], [0.70, 0.55, 0.10, 0.30]], dtype=np.float32)
TEXTS = ["lorem ipsum dolor sit amet consectetur adipiscing elit sed", "lorem", "ipsum"]


def _sample(goal: str, target: Action, step: int = 0) -> Sample:
    image = np.random.default_rng(step).integers(0, 255, size=(210, 160, 3), dtype=np.uint8)
    return Sample(episode_id=f"ep{step}", step_id=step, dataset="miniwob", image=image, goal=goal,
                  history=(Action.tap(0.5, 0.5),), plan=(target.action_type,), target=target,
                  ui_positions=BOXES, ui_text=TEXTS)


def test_tapped_box_is_the_smallest_box_holding_the_tap():
    assert tapped_box(_sample("g", Action.tap(0.35, 0.2))) == 1  # inside the page box too: the word wins
    assert tapped_box(_sample("g", Action.tap(0.9, 0.1))) == 0  # only the page box
    assert tapped_box(_sample("g", Action.type("lorem"))) is None
    assert tapped_box(dataclasses.replace(_sample("g", Action.tap(0.35, 0.2)), ui_positions=np.zeros((0, 4)))) is None


def test_named_span_takes_whole_words_and_prefers_the_quoted_one():
    goal = ' Click on the "on" button, then on OK.'
    assert named_span(goal, "on") == (15, 17)  # the quoted one, not "Click on" or "then on"
    assert named_span(" Click the button ONE.", "one") == (18, 21)  # case-insensitive
    assert named_span(" Click the button ONE.", "on") is None  # not inside "button" or "ONE"
    assert named_span(" go on and on", "on") is None  # twice, unquoted: ambiguous
    assert named_span(" click submit", "a label far too long to be a word-like label") is None


def test_builder_marks_the_goal_tokens_of_the_tapped_word(tok, model):
    builder = ExampleBuilder(tok, model.config, goal_words=True)
    sample = _sample('Click on the link "lorem".', Action.tap(0.35, 0.2))
    ex = builder(sample)
    named = [i for i, m in zip(ex["input_ids"], ex["goal_query"]) if m]
    assert named and tok.decode(named).strip(' "') == "lorem"
    assert all(ex["labels"][t] == -100 for t, m in enumerate(ex["goal_query"]) if m)  # prompt positions only
    _, letterbox = builder.preprocess(sample.image)
    assert ex["goal_box"].nonzero()[:, 0].tolist() == sorted(box_patches(BOXES[1], letterbox, model.config))
    assert ex["goal_patch"] == tap_image_token((0.35, 0.2), letterbox, model.config)
    for other in (_sample('Click on the link "dolor".', Action.tap(0.35, 0.2), 1),  # the goal names another text
                  _sample('Click on the link "lorem".', Action.type("lorem"), 2)):  # no tap
        ex = builder(other)
        assert not any(ex["goal_query"]) and not ex["goal_box"].any() and ex["goal_patch"] == -1
    assert "goal_query" not in ExampleBuilder(tok, model.config)(sample)
    batch = BatchCollator(pad_id=tok.pad_id)([builder(sample), ex])
    assert batch["goal_query"].shape == batch["input_ids"].shape
    assert batch["goal_box"].shape == (2, model.config.num_image_tokens) and batch["goal_patch"][1] == -1


def _batch(tok, model):
    builder = ExampleBuilder(tok, model.config, goal_words=True)
    return BatchCollator(pad_id=tok.pad_id)([builder(_sample('Click on "lorem".', Action.tap(0.35, 0.2), 0)),
                                             builder(_sample('Tap "ipsum" now.', Action.tap(0.75, 0.7), 1)),
                                             builder(_sample("Go back.", Action.back(), 2))])


def test_loss_is_minus_log_attention_mass_on_the_box(tok, model):
    batch = _batch(tok, model)
    loss_fn = GoalWordLoss(model, GroundingSpec(weight=1.0, layers=(1,), head=2))
    model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], batch["labels"], return_logits=False)
    x, cos, sin = loss_fn._inputs[1]
    full = _full_head_logits(model, x, cos, sin, head=2)
    is_image = batch["input_ids"] == model.config.image_token_id
    want = []
    for r, c in batch["goal_query"].bool().nonzero().tolist():
        p = full[r, c][is_image[r]].softmax(-1)
        want.append(-torch.log(p[batch["goal_box"][r].bool()].sum()))
    assert len(want) >= 2 and batch["goal_query"][2].sum() == 0
    assert torch.allclose(loss_fn.loss(batch), torch.stack(want).mean(), atol=1e-5)
    loss_fn.close()
    assert not model.decoder.layers[1].self_attn._forward_pre_hooks


def test_loss_trains_the_head_to_look_at_the_box(tok, model):
    batch = _batch(tok, model)
    loss_fn = GoalWordLoss(model, GroundingSpec(weight=1.0, layers=(0,), head=1, readout=True))
    losses = train_aux(model, batch, loss_fn, 15)
    assert losses[-1] < 0.5 * losses[0]


def test_no_named_word_gives_zero_and_misuse_is_an_error(tok, model):
    builder = ExampleBuilder(tok, model.config, goal_words=True)
    batch = BatchCollator(pad_id=tok.pad_id)([builder(_sample("Go back.", Action.back()))])
    check_empty_batch(model, batch, GoalWordLoss(model, GroundingSpec(weight=1.0, layers=(0,))))


def test_train_config_fields():
    cfg = TrainConfig(data=("d",), out="o", goal_word_weight=0.5, goal_word_layers="0,1", goal_word_head=2)
    assert cfg.goal_word_layers == (0, 1) and cfg.to_dict()["goal_word_layers"] == (0, 1)
    with pytest.raises(TrainConfigError, match="goal_word_weight"):
        TrainConfig(data=("d",), out="o", goal_word_weight=-1.0)
    with pytest.raises(TrainConfigError, match="goal-word-layers"):
        TrainConfig(data=("d",), out="o", goal_word_weight=1.0, goal_word_layers="")
