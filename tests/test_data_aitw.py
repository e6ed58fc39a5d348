"""AITW records: Step round trips (all fields, several image shapes), odd records, episode grouping."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autoui.actions import Action
from autoui.data.aitw import (
    AITWWriter,
    CorruptRecordError,
    Episode,
    ReadStats,
    Step,
    dataset_dirs,
    iter_steps,
    read_episodes,
    write_episodes,
)
from autoui.data.example import decode_step, encode_step, step_to_example
from autoui.data.tfrecord import TFRecordWriter


def _step(ep="1001", i=0, n=3, shape=(20, 9), action=None, boxes=2, seed=0):
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 0.5, (boxes, 4)).astype(np.float32)
    return Step(
        episode_id=ep, step_id=i, episode_length=n, goal="Open the  settings\tapp ✓",
        image=rng.integers(0, 256, (*shape, 3), dtype=np.uint8),
        action=action or Action.swipe((0.25, 0.5), (0.75, 0.5)),
        ui_positions=pos, ui_text=[f"text {k} é" for k in range(boxes)], ui_types=["TEXT"] * boxes,
        android_api_level=30, device_type="pixel_6", current_activity="com.a/.Main", dataset="general",
    )


ACTIONS = [Action.tap(0.2191, 0.5017), Action.swipe((0.8, 0.5), (0.2, 0.5)), Action.type('say "hi"'),
           Action.back(), Action.home(), Action.enter(), Action.complete(), Action.impossible()]


def _assert_same(a: Step, b: Step) -> None:
    for name in ("episode_id", "step_id", "episode_length", "goal", "ui_text", "ui_types", "android_api_level",
                 "device_type", "current_activity"):
        assert getattr(a, name) == getattr(b, name), name
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.ui_positions, b.ui_positions)
    assert b.action.action_type == a.action.action_type and b.action.typed_text == a.action.typed_text
    np.testing.assert_allclose(b.action.touch_yx, a.action.touch_yx, atol=1e-7)  # float32 in the record
    np.testing.assert_allclose(b.action.lift_yx, a.action.lift_yx, atol=1e-7)


def test_round_trip_all_fields_and_shapes(tmp_path):
    shapes = [(20, 9), (9, 20), (1, 1), (64, 30)]
    steps = [_step(i=i, n=len(ACTIONS), shape=shapes[i % 4], action=a, boxes=i % 3, seed=i)
             for i, a in enumerate(ACTIONS)]
    path = tmp_path / "general" / "general-00000-of-00001"
    assert write_episodes(path, [Episode("1001", steps[0].goal, "general", steps)]) == len(steps)
    (ep,) = read_episodes(path)
    assert (ep.episode_id, ep.dataset, len(ep)) == ("1001", "general", len(ACTIONS))
    for a, b in zip(steps, ep.steps):
        _assert_same(a, b)
        assert b.image.dtype == np.uint8 and b.image.shape[2] == 3 and b.dataset == "general"
    assert ep.steps[0].ui_positions.dtype == np.float32 and ep.steps[0].ui_positions.shape == (0, 4)


@pytest.mark.parametrize("channels", [1, 4])
def test_alpha_and_gray_images(channels):
    step = _step(shape=(5, 4))
    ex = step_to_example(step)
    pixels = np.arange(5 * 4 * channels, dtype=np.uint8).reshape(5, 4, channels)
    f = ex.features.feature
    f["image/encoded"].bytes_list.value[0] = pixels.tobytes()
    f["image/channels"].int64_list.value[0] = channels
    img = decode_step(ex.SerializeToString()).image
    assert img.shape == (5, 4, 3)
    expected = pixels[:, :, :3] if channels == 4 else np.repeat(pixels, 3, axis=2)
    np.testing.assert_array_equal(img, expected)


def test_decoded_image_is_a_view_of_the_record():
    img = decode_step(encode_step(_step(shape=(30, 20)))).image
    assert not img.flags.writeable and not img.flags.owndata  # np.frombuffer, no copy


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f["image/encoded"].bytes_list.value.__setitem__(0, b"short"), "raw pixels"),
    (lambda f: f.__delitem__("episode_id"), "missing field 'episode_id'"),
    (lambda f: f["results/action_type"].int64_list.value.__setitem__(0, 2), "invalid action"),
    (lambda f: f["image/ui_annotations_positions"].float_list.value.append(0.5), "multiple of 4"),
])
def test_bad_records_name_file_and_index(tmp_path, mutate, message):
    good = encode_step(_step())
    ex = step_to_example(_step(i=1))
    mutate(ex.features.feature)
    path = tmp_path / "single" / "shard"
    with TFRecordWriter(path) as w:
        for record in (good, ex.SerializeToString(), good):
            w.write(record)
    with pytest.raises(CorruptRecordError, match=message) as err:
        list(iter_steps(path))
    assert err.value.index == 1 and str(path) in str(err.value)
    stats = ReadStats()
    assert len(list(iter_steps(path, skip_corrupt=True, stats=stats))) == 2
    assert (stats.skipped_records, stats.steps, stats.records) == (1, 2, 2)


def test_grouping_orders_steps_and_warns_on_gaps(tmp_path, caplog):
    path = tmp_path / "install" / "install-00000-of-00001"
    with AITWWriter(path) as w:
        for i in (2, 0, 1):  # shuffled within the episode
            w.write_step(_step("A", i, 3))
        w.write_step(_step("B", 0, 3))  # steps 1, 2 missing
        w.write_step(_step("B", 2, 3))
        w.write_step(_step("C", 0, 1))
        assert w.count == 6
    stats = ReadStats()
    with caplog.at_level(logging.WARNING, logger="autoui.data.aitw"):
        eps = list(read_episodes(path, stats=stats))
    assert [(e.episode_id, [s.step_id for s in e.steps]) for e in eps] == [("A", [0, 1, 2]), ("B", [0, 2]), ("C", [0])]
    assert all(e.dataset == "install" for e in eps) and (stats.episodes, stats.steps) == (3, 6)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "episode B" in warnings[0] and "missing [1]" in warnings[0]


def test_dataset_dirs_and_multi_folder_reading(tmp_path):
    for name in ("web_shopping", "general"):
        write_episodes(tmp_path / name / f"{name}-00000-of-00001", [Episode("7", "g", name, [_step("7", 0, 1)])])
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "standard.json").write_text("{}")
    dirs = dataset_dirs(tmp_path)
    assert list(dirs) == ["general", "web_shopping"]
    assert [s.dataset for s in iter_steps(list(dirs.values()))] == ["general", "web_shopping"]
    assert list(dataset_dirs(tmp_path / "general")) == ["general"]  # a single dataset folder
    with pytest.raises(FileNotFoundError):
        dataset_dirs(tmp_path / "splits")


def test_example_module_loads_without_torch():
    code = ("import sys; from autoui.data.aitw import read_episodes; from autoui.data.example import example_pb2; "
            "example_pb2(); assert 'torch' not in sys.modules; import tfrecord; "
            "assert tfrecord.example_pb2 is example_pb2(); print('ok')")
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=repo)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_step_validation():
    with pytest.raises(ValueError, match="uint8"):
        Step("1", 0, 1, "g", np.zeros((4, 4, 3), np.float32), Action.back())
    with pytest.raises(ValueError, match="one entry per box"):
        Step("1", 0, 1, "g", np.zeros((4, 4, 3), np.uint8), Action.back(), np.zeros((2, 4)), ["a"], ["TEXT"])
