"""Reading drills (autoui.train.reading): "click on the text" examples from a screen's annotation boxes."""
from __future__ import annotations

import random

import numpy as np
import pytest

from autoui.actions import Action, ActionType
from autoui.data.example import Episode, Step
from autoui.data.samples import Sample, make_samples
from autoui.train.augment import Augment
from autoui.train.reading import drill_boxes, reading_drill

GOAL = 'Click on the link "ipsum".'
BOXES = [  # (text, (y, x, h, w))
    (GOAL, (0.0, 0.0, 0.2, 1.0)),  # the goal banner
    ("ipsum", (0.4, 0.1, 0.1, 0.2)),
    ("dolor", (0.6, 0.5, 0.1, 0.2)),
    ("dolor", (0.8, 0.5, 0.1, 0.2)),  # twice on screen: ambiguous
    ("", (0.3, 0.3, 0.1, 0.1)),  # an icon
    ("a whole sentence that is far too long", (0.2, 0.0, 0.1, 1.0)),
    ('say "hi"', (0.5, 0.5, 0.1, 0.1)),  # would break the goal's quotes
    ("gone", (1.2, 0.5, 0.1, 0.1)),  # off screen
    ("Submit", (0.9, 0.4, 0.08, 0.2)),
]


def _sample(epoch: int = 0) -> Sample:
    return Sample(episode_id="miniwob/click-link/3", step_id=1, dataset="miniwob",
                  image=np.zeros((210, 160, 3), np.uint8), goal=GOAL, history=(Action.tap(0.5, 0.5),),
                  plan=(ActionType.DUAL_POINT,), target=Action.tap(0.45, 0.2),
                  ui_positions=np.array([b for _, b in BOXES], np.float32), ui_text=tuple(t for t, _ in BOXES),
                  epoch=epoch)


def test_drills_name_only_short_unique_visible_texts_other_than_the_goal():
    assert [BOXES[i][0] for i in drill_boxes(_sample())] == ["ipsum", "Submit"]


def test_a_drill_is_a_one_step_tap_at_the_centre_of_its_box():
    drills = {reading_drill(_sample(), random.Random(seed)).goal: reading_drill(_sample(), random.Random(seed))
              for seed in range(20)}
    assert set(drills) == {'Click on the text "ipsum".', 'Click on the text "Submit".'}
    d = drills['Click on the text "Submit".']
    assert d.target.action_type == ActionType.DUAL_POINT
    assert d.target.touch_yx == pytest.approx((0.94, 0.5))
    assert d.history == () and d.plan == (ActionType.DUAL_POINT, ActionType.STATUS_TASK_COMPLETE)
    assert d.image is _sample().image or np.array_equal(d.image, _sample().image)


def test_a_screen_without_drillable_text_keeps_its_sample():
    s = Sample(**{**_sample().__dict__, "ui_text": ("",) * len(BOXES)})
    assert reading_drill(s, random.Random(0)) is s
    assert drill_boxes(Sample(**{**_sample().__dict__, "ui_text": (), "ui_positions": np.zeros((0, 4), np.float32)})) == []


def test_augment_read_draws_drills_per_epoch_and_rate():
    always, never = Augment(read=1.0, seed=1), Augment(read=0.0)
    assert always.enabled and not never.enabled
    assert always(_sample()).goal.startswith("Click on the text")
    assert always(_sample()).goal == always(_sample()).goal  # a pure function of (seed, sample, epoch)
    goals = {always(_sample(epoch=e)).goal for e in range(12)}
    assert len(goals) == 2  # the epochs drill both words
    some = Augment(read=0.5, seed=2)
    drilled = sum(some(_sample(epoch=e)).goal != GOAL for e in range(200))
    assert 60 < drilled < 140
    with pytest.raises(ValueError):
        Augment(read=1.5)


def test_make_samples_carries_the_box_texts():
    step = Step(episode_id="e", step_id=0, episode_length=1, goal=GOAL, image=np.zeros((4, 4, 3), np.uint8),
                action=Action.tap(0.5, 0.5), ui_positions=np.array([[0.1, 0.1, 0.2, 0.2]], np.float32),
                ui_text=["ipsum"], ui_types=["TEXT"])
    assert make_samples(Episode("e", GOAL, "miniwob", [step]))[0].ui_text == ("ipsum",)


def test_training_config_and_builder_take_the_read_rate():
    from autoui.model.config import load_preset
    from autoui.model.tokenizer import ActionTokenizer
    import argparse

    from autoui.train.config import TrainConfig, add_dataclass_arguments, config_from_args
    from autoui.train.setup import make_builder

    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, TrainConfig)
    cfg = config_from_args(parser.parse_args(["--data", "x", "--out", "y", "--preset", "tiny", "--augment-read", "1",
                                              "--grounding-weight", "1"]))
    assert cfg.augment_read == 1.0
    tok = ActionTokenizer.load()
    builder = make_builder(cfg, tok, load_preset("tiny").with_tokenizer(tok))
    example = builder(_sample())
    assert 'Click on the text "' in tok.decode(example["input_ids"])
    assert example["ground_patch"] >= 0 and sum(example["ground_query"]) > 0
