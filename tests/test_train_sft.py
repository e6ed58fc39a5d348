"""train/sft.py end to end on the tiny preset and synthetic AITW shards (CPU).

The script runs once as a real subprocess; the other runs call its `main()` in-process
(loaded from its path) to save interpreter start-up time.
"""
from __future__ import annotations

import importlib.util
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autoui.agent import load_agent
from autoui.data.synthetic import generate_dataset
from autoui.model.tokenizer import ActionTokenizer
from autoui.model.vlm import AutoUIModel
from autoui.train.config import TrainConfig
from autoui.train.loop import Trainer

REPO = Path(__file__).resolve().parents[1]
SFT = REPO / "train" / "sft.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("autoui_test_sft_script", SFT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sft():
    return _load_script()



@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sft_data")
    generate_dataset(root / "train", episodes_per_dataset=3, seed=11, shards=2)
    generate_dataset(root / "val", episodes_per_dataset=2, seed=12, shards=1, datasets=("general", "single"))
    return {"train": root / "train", "val": root / "val"}


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in _metrics(run) if r["kind"] == "train"]


def test_sft_script_end_to_end_writes_a_loadable_model(data, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, str(SFT), "--preset", "tiny", "--data", str(data["train"]), "--out", str(run),
           "--steps", "4", "--batch-size", "4", "--warmup", "1", "--val-data", str(data["val"]),
           "--val-max-steps", "6", "--val-every", "2", "--save-every", "2", "--max-new-tokens", "8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"final model: {run / 'final'}" in proc.stdout
    rows = _metrics(run)
    train = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert all(r["loss"] > 0 and r["samples_per_s"] > 0 and r["tokens_per_s"] > 0 for r in train)
    assert train[0]["lr"] == pytest.approx(1e-4)  # warmup of 1 step reaches the peak at once
    val = [r for r in rows if r["kind"] == "val"]
    assert [r["step"] for r in val] == [2, 4]
    assert all(0.0 <= r["val_action_match"] <= 100.0 and r["val_steps"] >= 6 for r in val)
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-00000004"
    # the final model loads with its tokenizer and drives one agent step
    model, tok = load_agent(run / "final")
    assert isinstance(model, AutoUIModel) and tok.vocab_size == ActionTokenizer.load().vocab_size
    assert TrainConfig.load(run / "final").fmt == "compact"
    final_state = model.state_dict()
    ckpt = AutoUIModel.from_pretrained(run / "checkpoints" / "step-00000004").state_dict()
    assert all(torch.equal(final_state[k], ckpt[k]) for k in final_state)


def test_exact_resume_matches_an_uninterrupted_run(sft, data, tmp_path):
    common = ["--preset", "tiny", "--data", str(data["train"]), "--steps", "3", "--batch-size", "2",
              "--grad-accum", "3", "--warmup", "1", "--workers", "2", "--shuffle-buffer", "16", "--seed", "5"]
    full, parts = tmp_path / "full", tmp_path / "parts"
    assert sft.main(common + ["--out", str(full)]) == 0
    # interrupted after one step (3 micro-batches: an odd count, so the workers' turn matters)
    assert sft.main(common + ["--out", str(parts), "--stop-after", "1"]) == 0
    assert not (parts / "final").exists()
    assert sft.main(["--resume", str(parts)]) == 0
    assert _losses(parts) == _losses(full)  # bit-identical, not approximately equal
    a = AutoUIModel.from_pretrained(full / "final").state_dict()
    b = AutoUIModel.from_pretrained(parts / "final").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_lowers_the_loss(data, tmp_path):
    cfg = TrainConfig(preset="tiny", data=(str(data["val"] / "single"),), out=str(tmp_path / "r"), steps=30,
                      batch_size=8, warmup=2, lr=3e-3, shuffle_buffer=1)
    assert Trainer(cfg).train() is not None
    losses = [loss for _, loss in _losses(tmp_path / "r")]
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_the_model_records_which_screens_it_learned_on(data, tmp_path):
    """A collection manifest's screen goes into the final model's screen.json (autoui.data.screen)."""
    import shutil

    from autoui.data.screen import model_view
    from autoui.train.config import TrainConfigError

    area, whole = tmp_path / "area", tmp_path / "whole"
    for folder, view in ((area, "area"), (whole, "task")):
        shutil.copytree(data["val"] / "single", folder / "miniwob")
        (folder / "manifest.json").write_text(json.dumps({"screen": {"view": view, "scale": 1.0}, "shards": {}}))
    cfg = TrainConfig(preset="tiny", data=(str(area / "miniwob"),), out=str(tmp_path / "r"), steps=1, batch_size=2,
                      save_every=1)
    assert model_view(Trainer(cfg).train()) == "area"
    assert model_view(tmp_path / "r" / "checkpoints" / "step-00000001") == "area"  # checkpoints too
    mixed = TrainConfig(preset="tiny", data=(str(area), str(whole)), out=str(tmp_path / "m"), steps=1, batch_size=2)
    with pytest.raises(TrainConfigError, match="mixes"):
        Trainer(mixed)


def test_grounding_loss_is_trained_and_logged(data, tmp_path):
    cfg = TrainConfig(preset="tiny", data=(str(data["train"]),), out=str(tmp_path / "r"), steps=12,
                      batch_size=8, warmup=2, lr=3e-3, shuffle_buffer=1, grounding_weight=1.0,
                      grounding_layers=(1,), grounding_readout=True)
    trainer = Trainer(cfg)
    final = trainer.train()
    train = [r for r in _metrics(tmp_path / "r") if r["kind"] == "train"]
    ground = [r["ground_loss"] for r in train]
    assert all(g >= 0 for g in ground) and max(ground) > 0  # the synthetic episodes hold taps
    assert all(r["loss"] >= r["ground_loss"] for r in train)  # the total includes it (weight 1)
    assert sum(ground[-3:]) < sum(ground[:3])
    # training-only: the saved model has exactly the preset's parameters
    assert set(AutoUIModel.from_pretrained(final).state_dict()) == set(trainer.raw.state_dict())


def test_box_text_loss_and_reading_drills_are_trained_and_logged(data, tmp_path):
    cfg = TrainConfig(preset="tiny", data=(str(data["train"]),), out=str(tmp_path / "r"), steps=12,
                      batch_size=8, warmup=2, lr=3e-3, shuffle_buffer=1, box_text_weight=1.0, box_text_boxes=3,
                      augment_read=0.5)
    trainer = Trainer(cfg)
    final = trainer.train()
    train = [r for r in _metrics(tmp_path / "r") if r["kind"] == "train"]
    box = [r["box_text_loss"] for r in train]
    assert all(b > 0 for b in box) and "ground_loss" not in train[0]  # synthetic boxes carry words
    assert all(r["loss"] >= r["box_text_loss"] for r in train)  # the total includes it (weight 1)
    assert sum(box[-3:]) < sum(box[:3])
    assert set(AutoUIModel.from_pretrained(final).state_dict()) == set(trainer.raw.state_dict())


def test_goal_word_loss_is_trained_and_logged(data, tmp_path):
    cfg = TrainConfig(preset="tiny", data=(str(data["train"]),), out=str(tmp_path / "r"), steps=12,
                      batch_size=8, warmup=2, lr=3e-3, shuffle_buffer=1, goal_word_weight=1.0,
                      goal_word_layers=(0,), goal_word_head=1, augment_read=0.5)
    trainer = Trainer(cfg)
    final = trainer.train()
    train = [r for r in _metrics(tmp_path / "r") if r["kind"] == "train"]
    goal = [r["goal_word_loss"] for r in train]
    assert all(g >= 0 for g in goal) and max(goal) > 0  # drills name the tapped text in quotes
    assert all(r["loss"] >= r["goal_word_loss"] for r in train) and "ground_loss" not in train[0]
    assert set(AutoUIModel.from_pretrained(final).state_dict()) == set(trainer.raw.state_dict())


def test_frozen_vision_with_feature_cache(data, tmp_path):
    cfg = TrainConfig(preset="tiny", data=(str(data["val"]),), out=str(tmp_path / "r"), steps=4, batch_size=8,
                      warmup=1, freeze_vision=True, cache_vision_features=True,
                      feature_cache_dir=str(tmp_path / "cache"))
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.raw.state_dict().items()}
    final = trainer.train()
    after = AutoUIModel.from_pretrained(final).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("vision."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("projector."))
    # 32 samples drawn from fewer screenshots: the second epoch reads the cache
    assert trainer.cache.hits > 0 and trainer.cache.misses == len(list((tmp_path / "cache").rglob("*.pt")))


def test_clear_errors(sft, data, tmp_path, caplog):
    args = ["--preset", "tiny", "--data", str(data["val"]), "--out", str(tmp_path / "r"), "--steps", "1",
            "--batch-size", "2"]
    assert sft.main(args + ["--stop-after", "1"]) == 0
    assert sft.main(args) == 2  # the folder holds a run: refuse to mix two runs
    assert "already holds a run" in caplog.text
    with pytest.raises(SystemExit) as exc:  # not a run directory: a usage error
        sft.main(["--resume", str(tmp_path)])
    assert exc.value.code == 2
    assert sft.main(["--preset", "tiny", "--data", str(data["val"]), "--out", str(tmp_path / "s"),
                     "--sample", "install=0.1"]) == 2
    assert "install" in caplog.text


def test_split_files_select_the_training_episodes(data, tmp_path):
    from autoui.data.aitw import read_episodes
    from autoui.model.config import load_preset
    from autoui.train.setup import load_tokenizer, make_builder, make_train_loader

    ids = sorted({ep.episode_id for ep in read_episodes([p for p in data["train"].rglob("*-of-*")])})
    (tmp_path / "a.json").write_text(json.dumps({"train": ids[:3], "validation": ids[3:5]}))
    (tmp_path / "b.json").write_text(json.dumps({"train": ids[5:7], "validation": []}))
    cfg = TrainConfig(preset="tiny", data=(str(data["train"]),), out=str(tmp_path / "r"), batch_size=4,
                      split_file=f"{tmp_path / 'a.json'},{tmp_path / 'b.json'}", split="train")
    tok = load_tokenizer(cfg)
    loader = make_train_loader(cfg, make_builder(cfg, tok, load_preset("tiny").with_tokenizer(tok)), 0, 1)
    seen = {key[0] for batch in itertools.islice(loader, 12) for key in batch["keys"]}
    assert seen == set(ids[:3] + ids[5:7])  # both files' train ids, nothing else (12 batches > 1 epoch)


def test_task_weight_reaches_the_training_stream(data, tmp_path):
    from autoui.data.aitw import read_episodes
    from autoui.model.config import load_preset
    from autoui.train.setup import load_tokenizer, make_builder, make_train_loader

    datasets = sorted({ep.dataset for ep in read_episodes([p for p in data["train"].rglob("*-of-*")])})
    heavy = datasets[0]

    def shares(weights):
        cfg = TrainConfig(preset="tiny", data=(str(data["train"]),), out=str(tmp_path / "r"), batch_size=4,
                          shuffle_buffer=8, task_weight=weights)
        tok = load_tokenizer(cfg)
        loader = make_train_loader(cfg, make_builder(cfg, tok, load_preset("tiny").with_tokenizer(tok)), 0, 1)
        keys = [key[0] for batch in itertools.islice(loader, 20) for key in batch["keys"]]
        by_id = {ep.episode_id: ep.dataset for ep in read_episodes([p for p in data["train"].rglob("*-of-*")])}
        return sum(by_id[k] == heavy for k in keys) / len(keys)

    base, weighted = shares({}), shares({heavy: 4.0})
    assert weighted > base + 0.1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sft_on_gpu_uses_bf16(data, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, str(SFT), "--preset", "tiny", "--data", str(data["train"]), "--out", str(run),
           "--steps", "3", "--batch-size", "4", "--warmup", "1", "--val-data", str(data["val"]), "--val-max-steps", "4"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "precision bf16" in proc.stderr
    assert AutoUIModel.from_pretrained(run / "final").dtype == torch.float32  # weights stay fp32; compute is bf16


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # two CPU processes with the gloo backend: the same DDP code path as multi-GPU
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), str(SFT)] + args
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _two_rank_args(data, out: Path) -> list[str]:
    return ["--preset", "tiny", "--data", str(data["train"]), "--out", str(out), "--steps", "3",
            "--batch-size", "2", "--warmup", "1", "--workers", "1", "--val-data", str(data["val"]),
            "--val-max-steps", "4", "--val-every", "3", "--save-every", "1"]


def test_two_processes_split_data_and_checkpoint_every_rank(data, tmp_path):
    proc = _torchrun(_two_rank_args(data, tmp_path / "r"), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = tmp_path / "r" / "checkpoints" / "step-00000003"
    assert (ckpt / "rng-rank0.pt").is_file() and (ckpt / "rng-rank1.pt").is_file()
    rows = _metrics(tmp_path / "r")
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2, 3]  # only rank 0 logs
    val = [r for r in rows if r["kind"] == "val"]
    assert len(val) == 1 and val[0]["val_steps"] >= 4  # both ranks' predictions, gathered
    assert "vision.post_layernorm.weight" in proc.stderr  # unused by design: frozen, or DDP would fail


@pytest.mark.slow
def test_two_processes_resume_exactly(data, tmp_path):
    full, parts = tmp_path / "full", tmp_path / "parts"
    for args in (_two_rank_args(data, full), _two_rank_args(data, parts) + ["--stop-after", "1"],
                 ["--resume", str(parts)]):
        proc = _torchrun(args, tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert _losses(parts) == _losses(full)
