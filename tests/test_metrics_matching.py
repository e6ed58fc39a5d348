"""The action-matching rule at each of its boundaries, and the vectorised path against a plain oracle."""
from __future__ import annotations

import math

import numpy as np
import pytest

from autoui.actions import Action, ActionType
from autoui.metrics import actions_match, enlarge_boxes, match_actions, texts_match

NO_BOXES = np.zeros((0, 4), np.float32)


def test_tap_swipe_threshold_is_inclusive():
    at = Action.swipe((0.0, 0.5), (0.04, 0.5))  # exactly 0.04 apart: a tap
    beyond = Action.swipe((0.0, 0.5), (0.0401, 0.5))  # a swipe
    assert at.is_tap and beyond.is_swipe
    ref = Action.tap(0.0, 0.5)
    assert actions_match(at, ref, NO_BOXES)
    assert not actions_match(beyond, ref, NO_BOXES)  # same touch point, but tap vs swipe
    assert not actions_match(ref, beyond, NO_BOXES)
    assert actions_match(beyond, Action.swipe((0.0, 0.5), (0.9, 0.5)), NO_BOXES)  # both swipes along y


def test_tap_distance_threshold_is_inclusive():
    ref = Action.tap(0.0, 0.5)
    assert actions_match(Action.tap(0.14, 0.5), ref, NO_BOXES)
    assert not actions_match(Action.tap(0.1401, 0.5), ref, NO_BOXES)
    assert actions_match(Action.tap(0.09, 0.59), ref, NO_BOXES)  # diagonal 0.127
    assert not actions_match(Action.tap(0.1, 0.6), ref, NO_BOXES)  # diagonal 0.141


def test_lift_points_of_taps_are_ignored():
    ref = Action.swipe((0.3, 0.3), (0.33, 0.3))  # a wobbly tap
    assert actions_match(Action.swipe((0.3, 0.3), (0.3, 0.27)), ref, NO_BOXES)


def test_enlarge_boxes_clamps_edges_at_zero_and_size_at_one():
    boxes = np.array([[0.5, 0.2, 0.1, 0.4], [0.05, 0.6, 0.2, 0.05], [0.4, 0.1, 0.5, 0.1]], np.float32)
    out = enlarge_boxes(boxes)
    np.testing.assert_allclose(out, [[0.43, 0.0, 0.24, 0.96], [0.0, 0.565, 0.48, 0.12], [0.05, 0.03, 1.0, 0.24]],
                               atol=1e-6)
    assert out[0, 1] == 0.0 and out[1, 0] == 0.0 and out[2, 2] == 1.0  # exact clamps


def test_enlarged_box_edges_are_inclusive():
    box = np.array([[0.5, 0.2, 0.1, 0.4]])
    top, left, h, w = enlarge_boxes(box)[0]
    ref = Action.tap(top, left)  # top-left corner (left clamped to 0)
    far = (top + h, left + w)  # bottom-right corner, ~0.99 away
    assert actions_match(Action.tap(*far), ref, box)
    assert not actions_match(Action.tap(far[0] + 1e-6, far[1]), ref, box)
    assert not actions_match(Action.tap(far[0], far[1] + 1e-6), ref, box)
    assert not actions_match(Action.tap(*far), ref, NO_BOXES)


def test_clamped_box_keeps_its_size():
    box = np.array([[0.05, 0.6, 0.2, 0.05]])  # top clamps to 0; height stays 2.4 * 0.2 = 0.48
    ref = Action.tap(0.0, 0.62)
    assert actions_match(Action.tap(0.45, 0.62), ref, box)  # would be outside if the far edge were y + 1.7h = 0.39
    assert not actions_match(Action.tap(0.49, 0.62), ref, box)


def test_both_points_must_share_one_box():
    boxes = np.array([[0.1, 0.1, 0.05, 0.1], [0.6, 0.1, 0.05, 0.1]])
    assert not actions_match(Action.tap(0.62, 0.15), Action.tap(0.12, 0.15), boxes)
    assert actions_match(Action.tap(0.14, 0.18), Action.tap(0.12, 0.1), boxes[:1])


def test_swipes_compare_main_axis_only():
    down = Action.swipe((0.2, 0.5), (0.8, 0.5))
    up = Action.swipe((0.8, 0.4), (0.3, 0.45))
    right = Action.swipe((0.5, 0.2), (0.55, 0.8))
    assert actions_match(up, down, NO_BOXES)  # direction is not compared
    assert not actions_match(right, down, NO_BOXES)
    tie = Action.swipe((0.2, 0.2), (0.5, 0.5))  # |dy| == |dx|: argmax picks y
    assert actions_match(tie, down, NO_BOXES) and actions_match(down, tie, NO_BOXES)
    assert not actions_match(tie, right, NO_BOXES)


@pytest.mark.parametrize("pred, ref, expected", [
    (Action.back(), Action.back(), True),
    (Action.back(), Action.home(), False),
    (Action.type("abc"), Action.type("xyz"), True),  # typed text is not compared here
    (Action.complete(), Action.impossible(), False),
    (Action.enter(), Action.enter(), True),
    (Action.tap(0.5, 0.5), Action.back(), False),
    (Action.back(), Action.tap(0.5, 0.5), False),
    (None, Action.back(), False),
    (None, Action.tap(0.5, 0.5), False),
])
def test_non_gestures_compare_codes(pred, ref, expected):
    assert actions_match(pred, ref, NO_BOXES) is expected


def test_text_rule():
    ref = Action.type("Hello")
    assert texts_match(Action.type(" hello world "), ref)  # lowercased, stripped, substring either way
    assert texts_match(Action.type("ell"), ref)
    assert not texts_match(Action.type("bye"), ref)
    assert texts_match(Action.type("dont"), Action.type("don't"))  # quotes dropped, as in Auto-UI's targets
    assert texts_match(Action.back(), Action.back())  # empty texts: a matched non-TYPE action counts
    assert not texts_match(None, ref)


def _oracle(pred: Action, ref: Action, boxes: np.ndarray) -> bool:
    """A plain restatement of the rule, one pair at a time."""
    if pred.action_type != ActionType.DUAL_POINT or ref.action_type != ActionType.DUAL_POINT:
        return pred.action_type == ref.action_type
    if pred.is_tap != ref.is_tap:
        return False
    if pred.is_tap:
        if math.dist(pred.touch_yx, ref.touch_yx) <= 0.14:
            return True
        for y, x, h, w in boxes.astype(float):
            t, l_ = max(0.0, y - 1.4 * h / 2), max(0.0, x - 1.4 * w / 2)
            b, r = t + min(1.0, h + 1.4 * h), l_ + min(1.0, w + 1.4 * w)
            if all(t <= p[0] <= b and l_ <= p[1] <= r for p in (pred.touch_yx, ref.touch_yx)):
                return True
        return False

    def axis(a):
        return int(abs(a.touch_yx[1] - a.lift_yx[1]) > abs(a.touch_yx[0] - a.lift_yx[0]))
    return axis(pred) == axis(ref)


def _random_action(rng) -> Action:
    r = rng.random()
    grid = lambda: float(rng.integers(0, 21)) / 20  # noqa: E731 -- a grid makes ties and exact edges common
    if r < 0.5:
        y, x = grid(), grid()
        return Action.swipe((y, x), (min(1.0, y + rng.choice([0, 0.02, 0.05])), x))
    if r < 0.75:
        return Action.swipe((grid(), grid()), (grid(), grid()))
    return Action.from_aitw(int(rng.choice([3, 5, 6, 7, 10, 11])), (-1, -1), (-1, -1), "a")


def test_vectorised_path_agrees_with_oracle():
    rng = np.random.default_rng(0)
    n = 3000
    preds = [_random_action(rng) for _ in range(n)]
    refs = [_random_action(rng) for _ in range(n)]
    boxes = [(rng.integers(0, 11, (int(rng.integers(0, 6)), 4)) / 20).astype(np.float32) for _ in range(n)]
    got = match_actions(preds, refs, boxes)
    expected = np.array([_oracle(p, r, b) for p, r, b in zip(preds, refs, boxes)])
    assert got.dtype == bool and got.shape == (n,)
    assert (got == expected).all()
    assert 0.1 < got.mean() < 0.9  # the sample exercises both outcomes
    with pytest.raises(ValueError):
        match_actions(preds[:2], refs[:3], boxes[:3])
