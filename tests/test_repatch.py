"""autoui.model.vision.repatch and train/repatch_model.py: a finer patch grid from a trained tower."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from autoui.model.config import load_preset
from autoui.model.vision import VisionEncoder, repatch
from autoui.model.vlm import AutoUIModel


def _tower(variant: str = "siglip") -> VisionEncoder:
    torch.manual_seed(0)
    vision = VisionEncoder(dataclasses.replace(load_preset("tiny").vision, variant=variant))  # 32 px, patch 8
    with torch.no_grad():
        vision.embeddings.position_embedding.weight.normal_()
    return vision.eval()


@pytest.mark.parametrize("variant", ["siglip", "clip"])
def test_repatch_keeps_what_it_can_and_resizes_the_rest(variant):
    old = _tower(variant)
    new = repatch(old, 4)
    assert new.config.patch_size == 4 and new.embeddings.side == 8 and old.config.patch_size == 8
    flat = torch.full((1, 3, 32, 32), 0.3)  # a flat colour embeds as before, in every patch
    with torch.no_grad():
        before = old.embeddings.patch_embedding(flat)[0, :, 0, 0]
        after = new.embeddings.patch_embedding(flat)[0]  # [D, 8, 8]
    assert torch.allclose(after, before[:, None, None].expand_as(after), atol=1e-5)
    table_old, table_new = old.embeddings.position_embedding.weight, new.embeddings.position_embedding.weight
    extra = 1 if variant == "clip" else 0
    assert table_new.shape == (64 + extra, table_old.shape[1])
    if extra:
        assert torch.equal(table_new[0], table_old[0])  # the class token's position is kept
    grid_old = table_old[extra:].reshape(4, 4, -1)
    grid_new = table_new[extra:].reshape(8, 8, -1)
    assert (grid_new.mean((0, 1)) - grid_old.mean((0, 1))).abs().max() < 0.2  # interpolated, same scale
    sd_old, sd_new = old.state_dict(), new.state_dict()
    for name, value in sd_old.items():
        if not name.startswith(("embeddings.patch_embedding", "embeddings.position_embedding")):
            assert torch.equal(sd_new[name], value), name
    assert new(torch.randn(2, 3, 32, 32)).shape == (2, 64 + extra, old.config.hidden_size)


def test_repatch_refuses_sizes_that_do_not_divide():
    old = _tower()
    for bad in (3, 8, 16):
        with pytest.raises(ValueError, match="must divide"):
            repatch(old, bad)


def test_repatch_model_script_writes_a_loadable_model_with_more_image_tokens(tmp_path, capsys, train_script,
                                                                             tiny_model_dir):
    src, script = tiny_model_dir, train_script("repatch_model.py")
    assert script.main([str(src), "--patch", "4", "--out", str(tmp_path / "p4")]) == 0
    assert "64 image tokens (was 16)" in capsys.readouterr().out
    model = AutoUIModel.from_pretrained(tmp_path / "p4")
    assert model.config.vision.patch_size == 4 and model.config.num_image_tokens == 64
    assert json.loads((tmp_path / "p4" / "screen.json").read_text())["view"] == "area"
    cfg = model.config
    ids = torch.tensor([[cfg.bos_token_id] + [cfg.image_token_id] * cfg.num_image_tokens + [10, 11]])
    out = model.generate_greedy(torch.randn(1, 3, 32, 32), ids, max_new_tokens=3)
    assert out.shape[0] == 1 and 1 <= out.shape[1] <= 3
    with pytest.raises(SystemExit, match="must divide"):
        script.main([str(src), "--patch", "3", "--out", str(tmp_path / "bad")])
