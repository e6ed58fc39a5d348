"""train/probe_reading.py end to end on a tiny model and a shard of two-button screens."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

from autoui.actions import Action
from autoui.data.aitw import write_episodes
from autoui.data.example import Episode, Step
from autoui.model.config import load_preset
from autoui.model.tokenizer import ActionTokenizer
from autoui.model.vlm import AutoUIModel

SCRIPT = Path(__file__).resolve().parents[1] / "train" / "probe_reading.py"


def _episode(i: int) -> Episode:
    goal = "Click button ONE."
    step = Step(episode_id=f"miniwob/click-test-2/{i}", step_id=0, episode_length=1, goal=goal,
                image=np.full((210, 160, 3), 255, np.uint8), action=Action.tap(0.35, 0.3),
                ui_positions=np.array([[0.0, 0.0, 0.2, 1.0], [0.3, 0.2, 0.1, 0.2], [0.6, 0.5, 0.1, 0.2]], np.float32),
                ui_text=[goal, "ONE", "TWO"], ui_types=["TEXT", "ICON_BUTTON", "ICON_BUTTON"], dataset="miniwob")
    return Episode(step.episode_id, goal, "miniwob", [step])


def test_probe_reports_both_probes_per_task_with_chance(tmp_path, capsys):
    write_episodes(tmp_path / "data" / "miniwob" / "shard-00000-of-00001.tfrecord.gz", [_episode(i) for i in range(3)])
    tok = ActionTokenizer.load()
    torch.manual_seed(0)
    AutoUIModel(load_preset("tiny").with_tokenizer(tok)).save_pretrained(tmp_path / "model", tokenizer=tok)
    spec = importlib.util.spec_from_file_location("autoui_test_probe_reading", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "probe.json"
    assert script.main(["--model", str(tmp_path / "model"), "--data", str(tmp_path / "data"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["episodes"] == 3
    drill, boxes = result["drill"]["tasks"]["click-test-2"], result["boxes"]["tasks"]["click-test-2"]
    assert drill["n"] == 3 and drill["chance"] == 50.0  # two buttons: the goal banner is not drilled
    assert boxes["n"] == 9 and boxes["chance"] == 33.3  # the banner's short text is a box to read
    assert 0.0 <= drill["hit"] <= 100.0 and 0.0 <= boxes["hit"] <= 100.0
    assert "drill (tap the named text)" in capsys.readouterr().out
