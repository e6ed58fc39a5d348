"""train/probe_generalization.py: tap-in-box rates on training vs held-out shards, per task."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

from autoui.actions import Action, format_compact
from autoui.data.aitw import write_episodes
from autoui.data.example import Episode, Step
from autoui.model.config import load_preset
from autoui.model.tokenizer import ActionTokenizer
from autoui.model.vlm import AutoUIModel

SCRIPT = Path(__file__).resolve().parents[1] / "train" / "probe_generalization.py"
BOXES = np.array([[0.3, 0.2, 0.1, 0.2], [0.6, 0.5, 0.1, 0.2]], np.float32)  # (y, x, h, w): ONE, TWO


def _episode(task: str, seed: int) -> Episode:
    step = Step(episode_id=f"miniwob/{task}/{seed}", step_id=0, episode_length=1, goal="Click button ONE.",
                image=np.random.default_rng(seed).integers(0, 255, (160, 160, 3), dtype=np.uint8),
                action=Action.tap(0.35, 0.3), ui_positions=BOXES, ui_text=["ONE", "TWO"],
                ui_types=["ICON_BUTTON", "ICON_BUTTON"], dataset="miniwob")
    return Episode(step.episode_id, step.goal, "miniwob", [step])


def _script():
    spec = importlib.util.spec_from_file_location("autoui_test_probe_generalization", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def _data(root: Path, first: int, n: int) -> Path:
    for task in ("click-test", "click-test-2"):  # click-test's shards must not pick up click-test-2's
        write_episodes(root / "miniwob" / f"{task}-{first:07d}-{first + n - 1:07d}.tfrecord.gz",
                       [_episode(task, first + i) for i in range(n)])
    return root


def test_hit_rate_counts_taps_inside_the_targets_box(tmp_path, monkeypatch):
    script = _script()
    samples = script.tap_samples(str(_data(tmp_path / "d", 0, 4)), "click-test-2", 10, history=8)
    assert len(samples) == 4 and {s.episode_id.split("/")[1] for s in samples} == {"click-test-2"}
    answers = iter([[format_compact(Action.tap(0.33, 0.25))] * 2 + [format_compact(Action.tap(0.65, 0.6)), "garbage"]])
    monkeypatch.setattr(script, "predict_texts", lambda *a, **k: next(answers))
    assert script.hit_rate(None, None, samples, None, batch=4) == 50.0  # 2 inside ONE; one on TWO; one unparsable


def test_probe_end_to_end_writes_both_splits(tmp_path):
    tok = ActionTokenizer.load()
    torch.manual_seed(0)
    AutoUIModel(load_preset("tiny").with_tokenizer(tok)).save_pretrained(tmp_path / "model", tokenizer=tok)
    out = tmp_path / "probe.json"
    assert _script().main(["--model", str(tmp_path / "model"), "--train", str(_data(tmp_path / "train", 0, 3)),
                           "--heldout", str(_data(tmp_path / "heldout", 500000, 2)),
                           "--tasks", "click-test-2,click-test", "--steps", "8", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["tasks"]
    assert set(rows) == {"click-test-2", "click-test"}
    for row in rows.values():
        assert row["train"]["steps"] == 3 and row["heldout"]["steps"] == 2
        assert all(0.0 <= row[s]["hit_pct"] <= 100.0 for s in ("train", "heldout"))
