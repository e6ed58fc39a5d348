"""autoui.train.regrid and train/regrid_model.py: fit a re-patched tower to the coarse features."""
from __future__ import annotations

import json

import pytest
import torch

from autoui.data.synthetic import generate_dataset
from autoui.model.config import load_preset
from autoui.model.vlm import AutoUIModel
from autoui.train.regrid import (RegridConfig, coarse_features, feature_loss, fit_fine_grid, repatch_model,
                                 repeat_on_grid)


def test_repeat_on_grid_copies_each_token_to_its_sub_cells():
    feats = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)  # a 2 x 2 grid, D = 3
    out = repeat_on_grid(feats, side=2, factor=2)  # -> 4 x 4
    grid = out.reshape(2, 4, 4, 3)
    for r in range(4):
        for c in range(4):
            assert torch.equal(grid[:, r, c], feats[:, (r // 2) * 2 + c // 2])
    with pytest.raises(ValueError, match="expected 9 grid tokens"):
        repeat_on_grid(feats, side=3, factor=2)


def _images(n: int, size: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def test_fit_fine_grid_moves_the_fine_features_to_the_coarse_ones_and_spares_the_decoder():
    torch.manual_seed(0)
    coarse = AutoUIModel(load_preset("tiny")).eval()  # 32 px, patch 8: a 4 x 4 grid
    pixels = _images(24, coarse.config.image_size)
    targets = coarse_features(coarse, pixels)
    assert targets.shape == (24, 16, coarse.config.decoder.hidden_size)
    fine = AutoUIModel(coarse.config)
    fine.load_state_dict(coarse.state_dict())
    repatch_model(fine, 4)
    decoder_before = {k: v.clone() for k, v in fine.decoder.state_dict().items()}

    def loss_now() -> float:
        with torch.no_grad():
            return feature_loss(fine.encode_images(pixels), repeat_on_grid(targets, 4, 2)).item()

    start = loss_now()
    losses = fit_fine_grid(fine, pixels, targets, RegridConfig(steps=60, batch_size=8, lr=3e-3, warmup=5))
    assert len(losses) == 60 and loss_now() < 0.5 * start
    assert all(torch.equal(v, fine.decoder.state_dict()[k]) for k, v in decoder_before.items())
    assert all(p.requires_grad for p in fine.decoder.parameters())  # unfrozen again
    with pytest.raises(ValueError, match="must tile"):
        fit_fine_grid(fine, pixels, targets[:, :9], RegridConfig(steps=1))
    with pytest.raises(ValueError, match="as many targets"):
        fit_fine_grid(fine, pixels[:3], targets, RegridConfig(steps=1))
    with pytest.raises(ValueError, match="RegridConfig"):
        RegridConfig(steps=0)


def test_regrid_model_script_writes_a_finer_model_closer_to_the_coarse_one(tmp_path, capsys, train_script,
                                                                          tiny_model_dir):
    data = tmp_path / "data"
    generate_dataset(data, episodes_per_dataset=2, seed=3)
    script = train_script("regrid_model.py")
    out = tmp_path / "p4"
    assert script.main([str(tiny_model_dir), "--patch", "4", "--data", str(data), "--out", str(out),
                        "--every", "1", "--screens", "16", "--steps", "40", "--batch-size", "8",
                        "--lr", "3e-3", "--check-data", str(data), "--check-steps", "6"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["image_tokens"] == 64 and report["screens"] == 16
    assert report["loss_last_20"] < report["loss_first_20"]
    check = report["check"]
    assert check["steps"] == 6 and all(0 <= n <= 6 for n in check["same_action_text_as_coarse"].values())
    assert json.loads((out / "regrid.json").read_text()) == report
    model = AutoUIModel.from_pretrained(out)
    assert model.config.vision.patch_size == 4
    src = AutoUIModel.from_pretrained(tiny_model_dir)
    assert all(torch.equal(v, model.decoder.state_dict()[k]) for k, v in src.decoder.state_dict().items())
    assert json.loads((out / "screen.json").read_text())["view"] == "area"
