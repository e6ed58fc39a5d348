"""MiniWoB++ tasks end to end in real headless Chromium: goals, rewards, success, seeds."""
from __future__ import annotations

import re

import numpy as np
import pytest

from autoui.actions import Action
from autoui.envs.base import EnvError

pytestmark = pytest.mark.browser  # skipped without Chromium (tests/conftest.py)

from autoui.envs.browser import Viewport
from autoui.envs.miniwob import MiniWoBEnv, list_tasks, task_path


@pytest.fixture(scope="module")
def env():
    e = MiniWoBEnv("click-button")
    yield e
    e.close()


def _target_button(env, goal):
    wanted = re.search(r'"(.*)"', goal).group(1)
    buttons = env.elements("button")
    right = [b for b in buttons if b.text == wanted]
    wrong = [b for b in buttons if b.text != wanted]
    return right[0], wrong


def test_task_names_and_unknown_task():
    tasks = list_tasks()
    assert "click-button" in tasks and "flight.AA" in tasks and len(tasks) > 100
    with pytest.raises(EnvError, match="did you mean click-button"):
        task_path("click-buton")
    with pytest.raises(ValueError, match="data_mode"):
        MiniWoBEnv("click-button", data_mode="dev")


def test_click_button_success(env):
    obs = env.reset("click-button", seed=3)
    assert (obs.width, obs.height) == (160, 210) and obs.screenshot.shape == (210, 160, 3)
    assert obs.goal.startswith("Click on the") and env.goal == obs.goal and env.seed == 3
    assert not obs.done and obs.success is None
    button, _ = _target_button(env, obs.goal)
    assert button.ui_type == "TEXT" and 0 <= button.y < 1 and 0 <= button.x < 1
    end = env.step(Action.tap(*button.center))
    assert end.done and end.success is True and end.reward == 1.0
    assert 0.9 < end.metadata["env_reward"] <= 1.0  # the page's time-decayed reward, decay practically off
    # the final screen shows the task, not MiniWoB's "START" cover
    assert env.evaluate("document.getElementById('sync-task-cover').style.display") == "none"
    with pytest.raises(EnvError, match="over"):
        env.step(Action.tap(0.5, 0.5))


def test_wrong_button_fails(env):
    for seed in range(10, 30):
        obs = env.reset(seed=seed)
        _, wrong = _target_button(env, obs.goal)
        if wrong:
            break
    end = env.step(Action.tap(*wrong[0].center))
    assert end.done and end.success is False and end.reward == -1.0


def test_same_seed_same_episode(env):
    a = env.reset(seed=42)
    goals = {env.reset(seed=s).goal for s in range(43, 50)}
    b = env.reset(seed=42)
    assert a.goal == b.goal and np.array_equal(a.screenshot, b.screenshot)
    assert len(goals) > 1


def test_stop_early_back_home_and_step_limit(env):
    obs = env.reset(seed=5)
    ignored = env.step(Action.back())
    assert not ignored.done and ignored.metadata["ignored"] == "back"
    end = env.step(Action.complete())
    assert end.done and end.success is False and end.reward == -1.0
    env.max_steps = 2
    try:
        env.reset(seed=5)
        assert not env.step(Action.tap(0.99, 0.99)).done
        end = env.step(Action.tap(0.99, 0.99))
        assert end.done and end.success is False and end.metadata["truncated"] is True
    finally:
        env.max_steps = None
    assert obs.goal


def test_coordinates_round_trip(env):
    env.reset(seed=1)
    assert env.to_css(0.5, 0.25) == (40.0, 105.0)
    assert env.to_normalized(40.0, 105.0) == (0.5, 0.25)


def test_typing_task_end_to_end(env):
    obs = env.reset("enter-text", seed=8)
    word = re.search(r'"(.*)"', obs.goal).group(1)
    (field,) = env.elements("input[type=text]")
    env.step(Action.tap(*field.center))
    env.step(Action.type(word))
    (submit,) = env.elements("#subbtn")
    end = env.step(Action.tap(*submit.center))
    assert end.done and end.success, end.metadata
    env.reset("click-button", seed=1)  # leave the module's env on its own task


def test_scale_two_gives_device_pixels_and_taps_still_land(env):
    env.use_viewport(Viewport(500, 320, device_scale_factor=2))
    try:
        obs = env.reset("click-button", seed=3)
        assert obs.screenshot.shape == (420, 320, 3)
        button, _ = _target_button(env, obs.goal)
        assert env.step(Action.tap(*button.center)).success
    finally:
        env.use_viewport(Viewport(500, 320))


def test_annotations_are_ocr_like_boxes_not_panels(env):
    # AITW's metric grows every annotation box 2.4x: a dialog's, a banner's or an SVG canvas's box
    # would make any tap "match"; annotations report text lines, controls and shapes instead
    for task in ("click-dialog", "click-shape", "grid-coordinate"):
        env.reset(task, seed=500001)
        leaves = env.elements(leaves_only=True)
        assert leaves and max(e.height * e.width for e in leaves) < 0.1, task
    obs = env.reset("click-dialog", seed=500001)
    banner = [e for e in env.elements(leaves_only=True) if e.text and e.text in obs.goal]
    assert banner and all(e.height < 0.1 for e in banner)  # the goal's lines, not its 160-px-wide box


def test_annotations_cover_visible_leaves(env):
    env.reset("click-checkboxes", seed=2)
    leaves = env.elements(leaves_only=True)
    assert any(e.tag == "input" and e.ui_type == "ICON_INPUT" and e.attrs["checked"] == "false" for e in leaves)
    assert any(e.ui_type == "TEXT" and "Submit" in e.text for e in leaves)
    assert all(0 <= e.y <= 1 and 0 <= e.x <= 1 and e.y + e.height <= 1 + 1e-6 for e in leaves)
    env.reset("click-button", seed=1)


def test_area_view_shows_the_play_area():
    """view="area": a 160x160 observation below the banner; taps and boxes use its coordinates."""
    with pytest.raises(ValueError, match="view"):
        MiniWoBEnv("click-button", view="banner")
    with MiniWoBEnv("click-button", view="area") as area, MiniWoBEnv("click-button") as whole:
        obs, full = area.reset(seed=3), whole.reset(seed=3)
        assert obs.screenshot.shape == (160, 160, 3) and (obs.width, obs.height) == (160, 160)
        assert obs.goal == full.goal
        # the area view is the whole view's pixels below the 50 px banner
        diff = np.abs(obs.screenshot.astype(int) - full.screenshot[50:].astype(int))
        assert diff.mean() < 1.0
        # the same button, normalized to each observation
        (b_area, _), (b_full, _) = _target_button(area, obs.goal), _target_button(whole, full.goal)
        assert b_area.y * 160 + 50 == pytest.approx(b_full.y * 210, abs=0.5)
        assert b_area.x == pytest.approx(b_full.x, abs=1e-3)
        assert area.step(Action.tap(*b_area.center)).success is True
        # nothing the goal needs is lost with the banner: click-color's swatch is named by its utterance
        goals = [area.reset("click-color", seed=s).goal for s in range(4)]
        assert all(re.fullmatch(r"Click on the [a-z]+ colored box\.", g) for g in goals)
