"""Split files (dict or list, str or int ids) and chain-of-action samples (history, plan, texts)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from autoui.actions import Action, ActionType
from autoui.data.aitw import Episode, Step
from autoui.data.samples import make_samples
from autoui.data.splits import SplitError, filter_by_ids, load_splits, split_ids


def _episode(actions, ep="9"):
    steps = [Step(ep, i, len(actions), "  find\n the  cafe ", np.zeros((4, 2, 3), np.uint8), a, dataset="single")
             for i, a in enumerate(actions)]
    return Episode(ep, steps[0].goal, "single", steps)


def test_load_splits_dict_list_and_int_ids(tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"train": ["1", 2], "test": [12345678901234567890]}))
    assert load_splits(f) == {"train": frozenset({"1", "2"}), "test": frozenset({"12345678901234567890"})}
    assert split_ids(f, "test") == {"12345678901234567890"}
    with pytest.raises(SplitError, match=r"no split 'val'.*\['test', 'train'\]"):
        split_ids(f, "val")
    with pytest.raises(SplitError, match="name one"):
        split_ids(f)
    f.write_text(json.dumps(["a", "b"]))
    assert split_ids(f) == {"a", "b"} and split_ids(f, "all") == {"a", "b"}


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"), ('{"test": "abc"}', "must be a list"),
    ('{"t": [1.5]}', "non-id"), ("3", "expected"),
])
def test_bad_split_files(tmp_path, content, message):
    f = tmp_path / "s.json"
    f.write_text(content)
    with pytest.raises(SplitError, match=message):
        load_splits(f)
    with pytest.raises(SplitError, match="not found"):
        load_splits(tmp_path / "missing.json")


def test_filter_by_ids():
    eps = [_episode([Action.complete()], ep=e) for e in ("1", "2", "3")]
    assert [e.episode_id for e in filter_by_ids(eps, frozenset({"3", "1", "99"}))] == ["1", "3"]


ACTIONS = [Action.home(), Action.tap(0.2191, 0.5017), Action.type("cafe"), Action.enter(),
           Action.swipe((0.8, 0.5), (0.2, 0.5)), Action.tap(0.5, 0.5), Action.back(), Action.tap(0.1, 0.9),
           Action.tap(0.3, 0.3), Action.tap(0.4, 0.4), Action.complete()]


def test_history_and_plan_lengths():
    samples = make_samples(_episode(ACTIONS), history=8, plan=4)
    assert len(samples) == len(ACTIONS)
    assert [len(s.history) for s in samples] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 8]
    assert [len(s.plan) for s in samples] == [4] * 8 + [3, 2, 1]
    s10 = samples[10]
    assert s10.history == tuple(ACTIONS[2:10]) and s10.plan == (ActionType.STATUS_TASK_COMPLETE,)
    assert samples[1].plan == (ActionType.DUAL_POINT, ActionType.TYPE, ActionType.PRESS_ENTER, ActionType.DUAL_POINT)
    assert samples[3].target == Action.enter() and samples[3].step_id == 3 and samples[3].dataset == "single"
    assert [len(s.history) for s in make_samples(_episode(ACTIONS), history=0, plan=1)] == [0] * 11
    with pytest.raises(ValueError):
        make_samples(_episode(ACTIONS), plan=0)


def test_prompt_and_target_text():
    s = make_samples(_episode(ACTIONS), history=8, plan=4)[2]
    assert s.prompt() == (
        'Previous Actions: "action_type": "PRESS_HOME", "touch_point": "[-1.0, -1.0]", '
        '"lift_point": "[-1.0, -1.0]", "typed_text": ""\n'
        '"action_type": "DUAL_POINT", "touch_point": "[0.2191, 0.5017]", "lift_point": "[0.2191, 0.5017]", '
        '"typed_text": ""\nGoal: find the cafe')
    assert s.target_text() == ('Action Plan: [TYPE,PRESS_ENTER,DUAL_POINT,DUAL_POINT] ; Action Decision: '
                               '"action_type": "TYPE", "touch_point": "[-1.0, -1.0]", "lift_point": "[-1.0, -1.0]", '
                               '"typed_text": "cafe"')
    assert s.prompt("compact") == "Previous Actions: home\ntap 219 502\nGoal: find the cafe"
    assert s.target_text("compact") == "type enter point point ; type cafe"
    assert s.target_text("compact", with_plan=False) == "type cafe"
    assert make_samples(_episode(ACTIONS))[0].prompt("compact") == "Previous Actions: \nGoal: find the cafe"
    with pytest.raises(ValueError, match="unknown action format"):
        s.prompt("json")
