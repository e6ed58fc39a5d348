"""train/probe_goal_words.py end to end on a tiny model and a shard of two-button screens."""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from autoui.actions import Action
from autoui.data.aitw import write_episodes
from autoui.data.example import Episode, Step
from autoui.data.samples import make_samples
from autoui.model.config import load_preset
from autoui.model.tokenizer import ActionTokenizer
from autoui.model.vlm import AutoUIModel
from autoui.train.examples import BatchCollator, ExampleBuilder
from autoui.train.goal_words import GoalWordLoss, named_span, token_positions
from autoui.train.grounding import GroundingSpec
from tests.test_grounding import train_aux

SCRIPT = Path(__file__).resolve().parents[1] / "train" / "probe_goal_words.py"
BOXES = np.array([[0.0, 0.0, 0.2, 1.0], [0.3, 0.2, 0.1, 0.2], [0.6, 0.5, 0.1, 0.2]], np.float32)


def _episode(i: int) -> Episode:
    goal = 'Click button "ONE".'
    step = Step(episode_id=f"miniwob/click-test-2/{i}", step_id=0, episode_length=1, goal=goal,
                image=np.random.default_rng(i).integers(0, 255, (210, 160, 3), dtype=np.uint8),
                action=Action.tap(0.35, 0.3), ui_positions=BOXES, ui_text=[goal, "ONE", "TWO"],
                ui_types=["TEXT", "ICON_BUTTON", "ICON_BUTTON"], dataset="miniwob")
    return Episode(step.episode_id, goal, "miniwob", [step])


def _script():
    spec = importlib.util.spec_from_file_location("autoui_test_probe_goal_words", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_probe_reports_mass_on_the_named_box_per_head(tmp_path):
    write_episodes(tmp_path / "data" / "miniwob" / "shard-00000-of-00001.tfrecord.gz", [_episode(i) for i in range(3)])
    tok = ActionTokenizer.load()
    torch.manual_seed(0)
    AutoUIModel(load_preset("tiny").with_tokenizer(tok)).save_pretrained(tmp_path / "model", tokenizer=tok)
    out = tmp_path / "probe.json"
    script = _script()
    assert script.main(["--model", str(tmp_path / "model"), "--data", str(tmp_path / "data"),
                        "--heads", "0:1,1:0", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["steps"] == 3 and set(result["heads"]) == {"L0h1", "L1h0"}
    goal = ' Click button "ONE".'
    n_named = len(token_positions(tok.encode(goal), goal, named_span(goal, "ONE"), tok))
    for head in result["heads"].values():
        assert head["queries"] == 3 * n_named
        assert 0.0 <= head["mass_on_box"] <= 1.0 and 0.0 <= head["argmax_in_box"] <= 1.0
        assert head["chance"] == pytest.approx(2 / 16)  # tiny: 4 x 4 patches, the button spans two columns


def test_probe_sees_what_the_loss_trained(tmp_path):
    tok = ActionTokenizer.load()
    torch.manual_seed(0)
    model = AutoUIModel(load_preset("tiny").with_tokenizer(tok))
    samples = [make_samples(_episode(i))[0] for i in range(4)]
    script = _script()
    before = script.probe(model, tok, samples, [(0, 1)])["L0h1"]["mass_on_box"]
    batch = BatchCollator(pad_id=tok.pad_id)([ExampleBuilder(tok, model.config, goal_words=True)(s) for s in samples])
    loss_fn = GoalWordLoss(model, GroundingSpec(1.0, (0,), 1))
    train_aux(model, batch, loss_fn, 10)
    loss_fn.close()
    model.eval()
    assert script.probe(model, tok, samples, [(0, 1)])["L0h1"]["mass_on_box"] > before + 0.2
    with pytest.raises(argparse.ArgumentTypeError, match="LAYER:HEAD"):
        script.parse_heads("0-1")
