"""Which screens a dataset holds and a model expects (autoui.data.screen)."""
from __future__ import annotations

import json

import pytest

from autoui.data.screen import DEFAULT_SCREEN, data_screen, model_view, write_model_screen


def _manifest(folder, screen=None):
    folder.mkdir(parents=True)
    body = {"dataset": "miniwob", "shards": {}} | ({"screen": screen} if screen else {})
    (folder / "manifest.json").write_text(json.dumps(body))
    return folder


def test_data_screen_reads_manifests_and_refuses_mixtures(tmp_path):
    area = _manifest(tmp_path / "area", {"view": "area", "scale": 1.0})
    old = _manifest(tmp_path / "old")  # a manifest from before the field: the whole task at scale 1
    (tmp_path / "aitw").mkdir()  # no manifest: says nothing
    assert data_screen([tmp_path / "aitw"]) is None
    assert data_screen([old]) == DEFAULT_SCREEN
    assert data_screen([area / "miniwob", tmp_path / "aitw"]) == {"view": "area", "scale": 1.0}
    with pytest.raises(ValueError, match="mixes"):
        data_screen([area, old])
    # collect(scale=1) from Python and --scale 1.0 from the command line are the same screens
    python_api = _manifest(tmp_path / "api", {"view": "task", "scale": 1})
    assert data_screen([old, python_api]) == DEFAULT_SCREEN
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a collection manifest"):
        data_screen([tmp_path / "bad"])


def test_model_view_round_trip(tmp_path):
    assert model_view(tmp_path) == "task" and model_view(None, default="area") == "area"
    write_model_screen(tmp_path, None)
    assert not (tmp_path / "screen.json").exists()
    write_model_screen(tmp_path, {"view": "area", "scale": 1.0})
    assert model_view(tmp_path) == "area"
    (tmp_path / "screen.json").write_text("{}")
    with pytest.raises(ValueError, match="unreadable"):
        model_view(tmp_path)
