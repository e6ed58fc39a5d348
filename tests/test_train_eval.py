"""train/eval_aitw.py end to end (its `main()`, loaded from the script path): batched prediction on
synthetic AITW shards, then the eval-aitw scoring."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from autoui.cli import main as autoui_main
from autoui.data.aitw import read_episodes
from autoui.data.synthetic import generate_dataset
from autoui.model.config import load_preset
from autoui.model.tokenizer import ActionTokenizer
from autoui.model.vlm import AutoUIModel

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "train" / "eval_aitw.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("autoui_test_eval_aitw_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module



@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval")
    data = root / "data"
    generate_dataset(data, episodes_per_dataset=2, seed=21, shards=1)
    ids = sorted({ep.episode_id for ep in read_episodes([p for p in data.rglob("*-of-*")])})
    split = root / "split.json"
    split.write_text(json.dumps({"train": ids[:4], "test": ids[4:]}))
    tok = ActionTokenizer.load()
    torch.manual_seed(0)
    model = AutoUIModel(load_preset("tiny").with_tokenizer(tok))
    model.save_pretrained(root / "model", tokenizer=tok)
    return {"root": root, "data": data, "split": split, "model": root / "model", "test_ids": set(ids[4:])}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_eval_script_writes_predictions_and_the_eval_aitw_metrics(script, setup, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--model", str(setup["model"]), "--data", str(setup["data"]), "--split-file", str(setup["split"]),
            "--split", "test", "--out", str(out), "--batch-size", "4", "--max-new-tokens", "6"]
    assert script.main(argv) == 0
    stdout = capsys.readouterr().out
    assert "overall" in stdout and "action" in stdout  # the table
    preds = _lines(out / "predictions.jsonl")
    steps = [s for ep in read_episodes([p for p in setup["data"].rglob("*-of-*")])
             if ep.episode_id in setup["test_ids"] for s in ep.steps]
    assert sorted((p["episode_id"], p["step_id"]) for p in preds) == sorted((s.episode_id, s.step_id) for s in steps)
    assert all(set(p) == {"episode_id", "step_id", "prediction"} and isinstance(p["prediction"], str) for p in preds)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"subsets", "overall", "micro"} and metrics["micro"]["steps"] == len(steps)
    run = json.loads((out / "run.json").read_text())
    assert run["steps"] == len(steps) and run["steps_per_s"] > 0
    # scoring the same file with `autoui eval-aitw` gives the very same JSON
    cli_out = tmp_path / "cli.json"
    assert autoui_main(["eval-aitw", "--data", str(setup["data"]), "--predictions", str(out / "predictions.jsonl"),
                        "--out", str(cli_out), "--split-file", str(setup["split"]), "--split", "test"]) == 0
    assert json.loads(cli_out.read_text()) == metrics


def test_batching_does_not_change_predictions(script, setup, tmp_path):
    common = ["--model", str(setup["model"]), "--data", str(setup["data"]), "--max-new-tokens", "6",
              "--max-steps", "8"]
    assert script.main(common + ["--out", str(tmp_path / "b1"), "--batch-size", "1"]) == 0
    assert script.main(common + ["--out", str(tmp_path / "b5"), "--batch-size", "5"]) == 0
    one, five = _lines(tmp_path / "b1" / "predictions.jsonl"), _lines(tmp_path / "b5" / "predictions.jsonl")
    assert len(one) >= 8 and one == five  # left padding must not leak into the answers
    # --max-steps scores exactly the predicted (whole) episodes
    evaluated = json.loads((tmp_path / "b5" / "evaluated_episodes.json").read_text())
    assert evaluated == list(dict.fromkeys(p["episode_id"] for p in five))
    assert json.loads((tmp_path / "b5" / "metrics.json").read_text())["micro"]["steps"] == len(five)


def test_eval_script_errors(script, setup, tmp_path, capsys):
    assert script.main(["--model", str(tmp_path), "--data", str(setup["data"]), "--out", str(tmp_path / "o")]) == 2
    assert "not a saved model" in capsys.readouterr().err
    assert script.main(["--model", str(setup["model"]), "--data", str(setup["data"]), "--out", str(tmp_path / "o"),
                        "--split-file", str(setup["split"]), "--split", "val"]) == 2
    assert "no split 'val'" in capsys.readouterr().err
