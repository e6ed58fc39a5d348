"""Scores: per dataset, unweighted overall vs pooled micro, episode success, missing/invalid, predictions file."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from autoui.actions import Action, format_action
from autoui.metrics import Evaluator, PredictionsError, evaluate, format_table, load_predictions

BOX = np.array([[0.1, 0.1, 0.05, 0.1]], np.float32)


def _step(dataset, ep, i, action):
    return SimpleNamespace(dataset=dataset, episode_id=ep, step_id=i, action=action, ui_positions=BOX)


STEPS = [
    _step("general", "g1", 0, Action.tap(0.12, 0.12)),
    _step("general", "g1", 1, Action.type("Paris")),
    _step("general", "g2", 0, Action.back()),
    _step("general", "g2", 1, Action.complete()),
    _step("single", "s1", 0, Action.swipe((0.8, 0.5), (0.2, 0.5))),
    _step("single", "s1", 1, Action.complete()),
]
PREDS = {
    ("g1", 0): format_action(Action.tap(0.13, 0.9), "compact"),  # 0.78 away, not in the box: wrong, right type
    ("g1", 1): format_action(Action.type("paris france"), "autoui", plan=()),  # match + text
    ("g2", 0): "back",
    ("g2", 1): "done",
    ("s1", 0): 'Action Plan: [DUAL_POINT] ; Action Decision: "action_type": "DUAL_POINT", "touch_point": garbage',
    # ("s1", 1) missing
    ("zz", 0): "back",  # unknown
}


def test_scores_by_hand():
    ev = Evaluator(PREDS, chunk=4)
    for s in STEPS:
        ev.add(s)
    r = ev.result()
    assert list(r) == ["subsets", "overall", "micro"]
    g, s = r["subsets"]["general"], r["subsets"]["single"]
    # g1's tap is the only reference tap in a box; its prediction is far off: in-box 0 of 1
    assert g == {"steps": 4, "action_match": 75.0, "type_accuracy": 100.0, "text_match": 75.0,
                 "episode_success": 50.0, "tap_in_box": 0.0, "box_taps": 1, "missing": 0, "invalid": 0}
    assert s == {"steps": 2, "action_match": 0.0, "type_accuracy": 0.0, "text_match": 0.0,
                 "episode_success": 0.0, "tap_in_box": 0.0, "box_taps": 0, "missing": 1, "invalid": 1}
    assert r["overall"] == {"steps": 6, "action_match": 37.5, "type_accuracy": 50.0, "text_match": 37.5,
                            "episode_success": 25.0, "tap_in_box": 0.0, "box_taps": 1}
    assert r["micro"] == {"steps": 6, "action_match": 50.0, "type_accuracy": pytest.approx(66.6667),
                          "text_match": 50.0, "episode_success": pytest.approx(33.3333), "tap_in_box": 0.0,
                          "box_taps": 1}
    assert ev.unknown == [("zz", 0)]
    assert evaluate(STEPS, PREDS) == r  # the one-call form, any chunking


def test_text_rule_counts_against_matched_type():
    steps = [_step("d", "e", 0, Action.type("hello"))]
    r = evaluate(steps, {("e", 0): Action.type("goodbye")})  # Action objects are accepted too
    assert r["micro"]["action_match"] == 100.0 and r["micro"]["text_match"] == 0.0


def test_table_lists_every_row():
    table = format_table(evaluate(STEPS, PREDS))
    lines = table.splitlines()
    assert lines[0].split() == ["subset", "steps", "action", "type", "text", "episode", "in-box", "missing",
                                "invalid"]
    assert [ln.split()[0] for ln in lines[2:4] + lines[5:]] == ["general", "single", "overall", "micro"]
    assert "37.50" in lines[5]


def test_load_predictions(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"episode_id": 123, "step_id": 0, "prediction": "back"}) + "\n\n"
                 + json.dumps({"episode_id": "123", "step_id": 1, "prediction": "home", "extra": 1}) + "\n")
    assert load_predictions(f) == {("123", 0): "back", ("123", 1): "home"}


@pytest.mark.parametrize("line, message", [
    ("{oops", ":2: not valid JSON"),
    ("[1, 2]", ":2: expected a JSON object"),
    ('{"episode_id": "1", "step_id": 0}', ":2: missing key(s) ['prediction']"),
    ('{"episode_id": "1", "step_id": "0", "prediction": "back"}', ":2: step_id must be an integer"),
    ('{"episode_id": "1", "step_id": 0, "prediction": null}', ":2: prediction must be a string"),
    ('{"episode_id": "a", "step_id": 0, "prediction": "home"}', ":2: second prediction for episode a step 0"),
])
def test_bad_prediction_lines_name_the_line(tmp_path, line, message):
    f = tmp_path / "p.jsonl"
    f.write_text('{"episode_id": "a", "step_id": 0, "prediction": "back"}\n' + line + "\n")
    with pytest.raises(PredictionsError) as err:
        load_predictions(f)
    assert message in str(err.value) and str(f) in str(err.value)
    with pytest.raises(PredictionsError, match="cannot open"):
        load_predictions(tmp_path / "missing.jsonl")


def test_tap_in_box_wants_the_smallest_box_not_a_grown_neighbour():
    # two words side by side: the AITW rule's grown boxes overlap, so a tap on the neighbour
    # "matches"; the strict rate counts only taps inside the word the reference tapped
    words = np.array([[0.50, 0.10, 0.04, 0.10], [0.50, 0.22, 0.04, 0.10], [0.0, 0.0, 1.0, 1.0]], np.float32)
    steps = [SimpleNamespace(dataset="d", episode_id=f"e{i}", step_id=0, action=Action.tap(0.52, 0.15),
                             ui_positions=words) for i in range(4)]
    preds = {("e0", 0): Action.tap(0.52, 0.27),  # the neighbour: published match, strict miss
             ("e1", 0): Action.tap(0.51, 0.12),  # the word itself
             ("e2", 0): Action.back(),
             ("e3", 0): Action.tap(0.9, 0.9)}  # inside only the page-sized box
    m = evaluate(steps, preds)["micro"]
    assert m["action_match"] == 75.0  # e0, e1 and e3 (the page's box holds both points)
    assert m["box_taps"] == 4 and m["tap_in_box"] == 25.0  # e1 only


def test_tap_in_box_skips_taps_outside_every_box():
    steps = [SimpleNamespace(dataset="d", episode_id="e", step_id=0, action=Action.tap(0.9, 0.9), ui_positions=BOX)]
    m = evaluate(steps, {("e", 0): Action.tap(0.9, 0.9)})["micro"]
    assert m["action_match"] == 100.0 and m["box_taps"] == 0 and m["tap_in_box"] == 0.0
