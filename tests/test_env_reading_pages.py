"""Reading pages: random-word screens rendered by Chromium, written as AITW demonstrations."""
from __future__ import annotations

import random
import subprocess
import sys

import pytest

from autoui.actions import ActionType
from autoui.envs.reading_pages import LAYOUTS, distinct_words, make_page, page_for

needs_chromium = pytest.mark.browser  # skipped without Chromium (tests/conftest.py)


def test_pages_are_a_pure_function_of_the_seed_and_name_one_word():
    assert page_for(7) == page_for(7) and page_for(7) != page_for(8)
    for layout in LAYOUTS:
        for seed in range(20):
            page = make_page(random.Random(seed), layout)
            assert f"{page.target}" in page.goal and page.html.count('data-w="target"') == 1
            assert "<script" not in page.html


def test_distinct_words_differ_case_insensitively():
    rng = random.Random(0)
    for kind in ("latin", "name", "code", "upper"):
        words = distinct_words(rng, 6, kind)
        assert len(words) == 6 and len({w.lower() for w in words}) == 6 and all(w.strip() for w in words)


def _box_of(step, text):
    return [tuple(float(v) for v in step.ui_positions[i]) for i, t in enumerate(step.ui_text) if t == text]


@needs_chromium
def test_collect_reading_writes_episodes_whose_tap_is_on_the_named_word(tmp_path):
    from autoui.data.aitw import read_episodes

    out = tmp_path / "reading"
    cmd = [sys.executable, "-m", "autoui", "collect", "reading", "--episodes", "6", "--seed", "40",
           "--shard-size", "4", "--workers", "1", "--out", str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert '"episodes": 6' in first.stdout
    episodes = list(read_episodes(out / "reading"))
    assert sorted(int(ep.episode_id.rsplit("/", 1)[1]) for ep in episodes) == list(range(40, 46))
    for ep in episodes:
        tap, done = ep.steps
        assert tap.image.shape == (210, 160, 3) and done.action.action_type == ActionType.STATUS_TASK_COMPLETE
        target = page_for(int(ep.episode_id.rsplit("/", 1)[1])).target
        boxes = _box_of(tap, target)
        assert boxes, f"{ep.goal}: no annotation box says {target!r} ({tap.ui_text})"
        (ty, tx), (y, x, h, w) = tap.action.touch_yx, boxes[0]
        assert y <= ty <= y + h and x <= tx <= x + w
        assert tuple(tap.image[46, 158]) == (255, 255, 0)  # MiniWoB's yellow goal banner
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and '"shards_reused": 2' in again.stdout


@needs_chromium
def test_collect_reading_area_view_records_the_play_area_below_the_banner(tmp_path):
    from autoui.data.aitw import read_episodes

    out = tmp_path / "reading-area"
    cmd = [sys.executable, "-m", "autoui", "collect", "reading", "--episodes", "4", "--seed", "40",
           "--shard-size", "4", "--workers", "1", "--view", "area", "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    episodes = list(read_episodes(out / "reading"))
    assert len(episodes) == 4
    for ep in episodes:
        tap = ep.steps[0]
        assert tap.image.shape == (160, 160, 3)
        assert not (tap.image[:4] == (255, 255, 0)).all(axis=-1).any()  # no banner row left
        target = page_for(int(ep.episode_id.rsplit("/", 1)[1])).target
        (ty, tx), (y, x, h, w) = tap.action.touch_yx, _box_of(tap, target)[0]
        assert y <= ty <= y + h and x <= tx <= x + w
        # the box is normalised to the 160x160 crop: the target's pixels there are not white
        py, px = int((y + h / 2) * 160), int((x + w / 2) * 160)
        patch = tap.image[max(0, py - 6):py + 6, max(0, px - 12):px + 12]
        assert (patch < 200).any(), f"{ep.goal}: nothing drawn at the target's box"


def test_reading_pages_reject_an_unknown_view():
    from autoui.envs.reading_pages import collect_pages

    with pytest.raises(ValueError, match="view"):
        collect_pages("/nonexistent", 1, view="banner")
