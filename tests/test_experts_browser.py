"""Experts end to end: real MiniWoB++ pages in headless Chromium through MiniWoBEnv."""
from __future__ import annotations

import pytest

from autoui.envs.rollout import failure_reason, run_episode
from autoui.experts import ExpertError, ExpertPolicy

pytestmark = pytest.mark.browser

# A spread of families: buttons, tabs, dialogs, forms with typing, checkboxes, spinner, shapes, tree.
TASKS = [
    "click-button-sequence", "click-tab-2", "click-dialog-2", "click-collapsible", "enter-text-2",
    "login-user", "click-checkboxes", "use-spinner", "click-shape", "navigate-tree", "identify-shape",
]
SEEDS = (1, 2, 3)  # train/check_experts.py measures on seeds from 100000; these stay apart


@pytest.fixture(scope="module")
def env():
    from autoui.envs.miniwob import MiniWoBEnv

    e = MiniWoBEnv()
    yield e
    e.close()


@pytest.mark.parametrize("task", TASKS)
def test_expert_solves_task(env, task):
    policy = ExpertPolicy(env)
    for seed in SEEDS:
        episode = run_episode(env, policy, task, seed, max_steps=20)
        assert episode.success, f"{task} seed {seed}: {failure_reason(episode)}"
        assert episode.reward > 0 and len(episode.steps) >= 1


def test_experts_emit_only_taps_and_text(env):
    # Every action must be something a person does on the screen: a tap inside the
    # observation, or typing; never a swipe, a key press or a "done" status.
    policy = ExpertPolicy(env)
    for task, kinds in (("enter-password", {"tap", "type"}), ("click-checkboxes", {"tap"})):
        played = run_episode(env, policy, task, 7, max_steps=20)
        assert played.success, played.error
        assert {a.kind for a in played.actions} == kinds
        for a in played.actions:
            assert a.kind != "tap" or all(0 <= v <= 1 for v in a.touch_yx)


def test_typing_goes_through_the_keyboard(env):
    obs = env.reset("enter-text", seed=11)
    policy = ExpertPolicy(env)
    policy.reset(obs.goal)
    first = policy.act(obs, [])
    assert first.kind == "tap"  # focus the field first
    obs = env.step(first)
    second = policy.act(obs, [first])
    assert second.kind == "type" and second.typed_text in obs.goal
    obs = env.step(second)
    assert env.evaluate("() => document.getElementById('tt').value") == second.typed_text


def test_expert_on_the_wrong_page_raises(env):
    obs = env.reset("click-test", seed=1)
    policy = ExpertPolicy(env)
    policy.reset(obs.goal)
    expert = policy.expert
    # Ask for an element that is not there: a clear ExpertError, not a tap somewhere.
    with pytest.raises(ExpertError, match="no visible element"):
        expert.tap("#no-such-element")


