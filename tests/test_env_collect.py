"""Demonstration collection: shards readable as AITW, a manifest, resuming, two workers."""
from __future__ import annotations

import json

import numpy as np
import pytest

from autoui.actions import ActionType

pytestmark = pytest.mark.browser  # skipped without Chromium (tests/conftest.py)

from autoui.data.aitw import read_episodes
from autoui.envs.collect import collect, load_manifest, plan_jobs
from autoui.envs.suite import parse_suite

SUITE = parse_suite({"name": "t", "tasks": [{"task": "click-button", "max_steps": 3},
                                             {"task": "enter-text", "max_steps": 6}]})


def test_plan_jobs_seeds_and_shards():
    jobs = plan_jobs(SUITE, episodes=5, seed=100, shard_size=2)
    assert [(j.task, j.first_seed, j.count) for j in jobs] == [
        ("click-button", 100, 2), ("click-button", 102, 2), ("click-button", 104, 1),
        ("enter-text", 100, 2), ("enter-text", 102, 2), ("enter-text", 104, 1)]
    assert jobs[0].name == "click-button-0000100-0000101"


def test_collect_writes_aitw_shards_and_resumes(tmp_path):
    jobs = plan_jobs(SUITE, episodes=2, seed=0, shard_size=1)
    totals = collect(jobs, tmp_path, workers=2, progress=False)
    assert totals["written"] + totals["failed"] == 4 and totals["written"] >= 3 and totals["skipped"] == 0
    episodes = {ep.episode_id: ep for ep in read_episodes(tmp_path / "miniwob")}
    assert len(episodes) == totals["written"]
    ep = episodes.get("miniwob/enter-text/1") or next(iter(episodes.values()))
    assert ep.dataset == "miniwob" and ep.goal
    steps = ep.steps
    assert [s.step_id for s in steps] == list(range(len(steps))) and steps[0].episode_length == len(steps)
    assert steps[-1].action.action_type == ActionType.STATUS_TASK_COMPLETE
    assert all(s.action.action_type != ActionType.STATUS_TASK_COMPLETE for s in steps[:-1])
    for s in steps:
        assert s.image.shape == (210, 160, 3) and s.image.dtype == np.uint8 and s.goal == ep.goal
        assert len(s.ui_positions) == len(s.ui_text) == len(s.ui_types) > 0
        assert ((s.ui_positions >= 0) & (s.ui_positions <= 1)).all()
    taps = [s for s in steps if s.action.is_tap]
    assert taps and all(0 <= v <= 1 for s in taps for v in s.action.touch_yx)
    # every tap lands in an annotation box of the screen it was taken on (the AITW metric relies on it)
    for s in taps:
        y, x = s.action.touch_yx
        assert any(b[0] <= y <= b[0] + b[2] and b[1] <= x <= b[1] + b[3] for b in s.ui_positions)

    manifest = load_manifest(tmp_path)
    assert set(manifest) == {j.name for j in jobs}
    again = collect(jobs, tmp_path, workers=1, progress=False)
    assert again["skipped"] == 4 and again["written"] == totals["written"]

    # a shard missing from the manifest (an interrupted run) is redone, the others are not
    data = json.loads((tmp_path / "manifest.json").read_text())
    del data["shards"][jobs[0].name]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    third = collect(jobs, tmp_path, workers=1, progress=False)
    assert third["skipped"] == 3 and third["written"] == totals["written"]

    # the manifest says which screens the folder holds; adding other ones to it is refused
    assert json.loads((tmp_path / "manifest.json").read_text())["screen"] == {"view": "task", "scale": 1.0}
    with pytest.raises(ValueError, match="area"):
        collect(jobs, tmp_path, workers=1, progress=False, view="area")


def test_area_view_collection_is_what_a_model_learns_on(tmp_path):
    """view="area" shards hold 160x160 screens; training from them records the view for evaluation."""
    from autoui.data.screen import data_screen

    jobs = plan_jobs(SUITE, episodes=1, seed=3, shard_size=1, tasks=["click-button"])
    assert collect(jobs, tmp_path, workers=1, progress=False, view="area")["written"] == 1
    (ep,) = read_episodes(tmp_path / "miniwob")
    assert all(s.image.shape == (160, 160, 3) for s in ep.steps)
    assert ep.steps[0].action.is_tap
    assert data_screen([tmp_path / "miniwob"]) == data_screen([tmp_path]) == {"view": "area", "scale": 1.0}
