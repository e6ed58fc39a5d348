"""`autoui eval-aitw` and `autoui aitw-stats` end to end on generated AITW-schema shards."""
from __future__ import annotations

import json

import pytest

from autoui.cli import main
from autoui.data.aitw import DATASETS, dataset_dirs, read_episodes
from autoui.data.synthetic import generate_dataset, generate_predictions

TOTAL_KEYS = {"steps", "action_match", "type_accuracy", "text_match", "episode_success", "tap_in_box", "box_taps"}
SUBSET_KEYS = TOTAL_KEYS | {"missing", "invalid"}


@pytest.fixture(scope="module")
def aitw(tmp_path_factory):
    root = tmp_path_factory.mktemp("aitw")
    summary = generate_dataset(root / "data", episodes_per_dataset=6, seed=3)
    counts = generate_predictions(root / "data", root / "preds.jsonl", seed=3)
    return root, summary, counts


def test_eval_end_to_end(aitw, capsys):
    root, summary, counts = aitw
    out = root / "out" / "metrics.json"
    rc = main(["eval-aitw", "--data", str(root / "data"), "--predictions", str(root / "preds.jsonl"),
               "--out", str(out)])
    assert rc == 0
    m = json.loads(out.read_text())
    assert set(m) == {"subsets", "overall", "micro"}
    assert list(m["subsets"]) == sorted(DATASETS)
    assert all(set(s) == SUBSET_KEYS for s in m["subsets"].values())
    assert set(m["overall"]) == TOTAL_KEYS and set(m["micro"]) == TOTAL_KEYS
    total = sum(s["steps"] for s in summary.values())
    assert m["micro"]["steps"] == m["overall"]["steps"] == total == counts["steps"]
    assert sum(s["missing"] for s in m["subsets"].values()) == counts["missing"] > 0
    assert sum(s["invalid"] for s in m["subsets"].values()) == counts["garbage"] > 0
    assert round(m["micro"]["action_match"] * total / 100) == counts["expect_action_match"]
    assert round(m["micro"]["text_match"] * total / 100) == counts["expect_text_match"]
    mean = sum(s["action_match"] for s in m["subsets"].values()) / len(DATASETS)
    assert m["overall"]["action_match"] == pytest.approx(mean, abs=1e-3)
    printed = capsys.readouterr().out
    assert "overall" in printed and "micro" in printed and "unknown predictions (ignored): 2" in printed


def test_eval_on_a_split(aitw, tmp_path):
    root, _, _ = aitw
    episodes = list(read_episodes(list(dataset_dirs(root / "data").values())))
    chosen = [e for e in episodes[::3] if e.dataset == "install"]
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": [], "test": [int(e.episode_id) for e in chosen]}))
    out = tmp_path / "m.json"
    rc = main(["eval-aitw", "--data", str(root / "data"), "--predictions", str(root / "preds.jsonl"),
               "--out", str(out), "--split-file", str(split), "--split", "test"])
    assert rc == 0
    m = json.loads(out.read_text())
    assert list(m["subsets"]) == ["install"] and m["micro"]["steps"] == sum(len(e) for e in chosen)
    assert main(["eval-aitw", "--data", str(root / "data"), "--predictions", str(root / "preds.jsonl"),
                 "--out", str(out), "--split-file", str(split), "--split", "train"]) == 2


def test_eval_errors_are_one_line(aitw, tmp_path, capsys):
    root, _, _ = aitw
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"episode_id": "1", "step_id": 0, "prediction": "back"}\n{"episode_id": \n')
    args = ["eval-aitw", "--data", str(root / "data"), "--out", str(tmp_path / "m.json")]
    assert main(args + ["--predictions", str(bad)]) == 2
    assert f"{bad}:2: not valid JSON" in capsys.readouterr().err
    assert main(args + ["--predictions", str(root / "preds.jsonl"), "--split", "test"]) == 2
    assert "--split needs --split-file" in capsys.readouterr().err
    assert main(["eval-aitw", "--data", str(tmp_path / "none"), "--predictions", str(bad), "--out", "x"]) == 2
    assert "no such data folder" in capsys.readouterr().err


def test_corrupt_shard_fails_or_is_skipped(aitw, tmp_path, capsys):
    root, _, _ = aitw
    data = tmp_path / "data"
    src = root / "data" / "single"
    (data / "single").mkdir(parents=True)
    for f in sorted(src.iterdir()):
        raw = f.read_bytes()
        (data / "single" / f.name).write_bytes(raw[: len(raw) - 50] if f.name.endswith("00001-of-00002") else raw)
    args = ["eval-aitw", "--data", str(data), "--predictions", str(root / "preds.jsonl"), "--out",
            str(tmp_path / "m.json")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "single-00001-of-00002" in err and "byte" in err and "--skip-corrupt" in err
    assert main(args + ["--skip-corrupt"]) == 0
    assert "shards with a broken tail" in capsys.readouterr().out


def test_aitw_stats(aitw, tmp_path, capsys):
    root, summary, _ = aitw
    out = tmp_path / "stats.json"
    assert main(["aitw-stats", "--data", str(root / "data"), "--json", str(out)]) == 0
    stats = json.loads(out.read_text())
    assert {k: {"episodes": v["episodes"], "steps": v["steps"]} for k, v in stats.items()} == summary
    for v in stats.values():
        assert sum(v["actions"].values()) == v["steps"] and v["actions"]["tap"] > 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:4] == ["dataset", "episodes", "steps", "tap"] and "total" in table
