"""autoui.model.soup and train/average_models.py: the weighted mean of models from one start."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from autoui.model.config import load_preset
from autoui.model.grow import grow_depth
from autoui.model.soup import average_models, soup_weights
from autoui.model.tokenizer import ActionTokenizer
from autoui.model.vlm import AutoUIModel


def _tiny(seed: int) -> AutoUIModel:
    torch.manual_seed(seed)
    return AutoUIModel(load_preset("tiny").with_tokenizer(ActionTokenizer.load()))


def test_every_tensor_is_the_weighted_mean():
    a, b, c = _tiny(0), _tiny(1), _tiny(2)
    soup = average_models([a, b, c], [2, 1, 1])
    for name, t in soup.state_dict().items():
        want = 0.5 * a.state_dict()[name] + 0.25 * b.state_dict()[name] + 0.25 * c.state_dict()[name]
        assert torch.allclose(t, want, atol=1e-6), name
    uniform = average_models([a, b])
    w = uniform.decoder.embed_tokens.weight
    assert torch.allclose(w, (a.decoder.embed_tokens.weight + b.decoder.embed_tokens.weight) / 2, atol=1e-6)
    same = average_models([a, a])  # a model averaged with itself is itself
    assert all(torch.equal(x, y) for x, y in zip(same.state_dict().values(), a.state_dict().values()))
    assert a.decoder.embed_tokens.weight.data_ptr() != same.decoder.embed_tokens.weight.data_ptr()  # a new model


def test_refuses_what_cannot_be_averaged():
    assert soup_weights(3, [1, 1, 2]) == [0.25, 0.25, 0.5]
    with pytest.raises(ValueError, match="at least 2"):
        soup_weights(1)
    with pytest.raises(ValueError, match="2 weights for 3"):
        soup_weights(3, [1, 1])
    with pytest.raises(ValueError, match=">= 0"):
        soup_weights(2, [1, -1])
    deeper = _tiny(1)
    grow_depth(deeper, 1, 0)
    with pytest.raises(ValueError, match="architecture"):
        average_models([_tiny(0), deeper])


def test_script_writes_a_soup_with_its_recipe_and_ship_keeps_it(tmp_path, train_script, tiny_model_dir, capsys):
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    (tiny_model_dir / "train_config.json").write_text('{"lr": 0.0002}\n')
    _tiny(7).save_pretrained(other, tokenizer=ActionTokenizer.load())
    out = tmp_path / "soup"
    script = train_script("average_models.py")
    assert script.main([str(tiny_model_dir), str(other), "--weights", "3,1", "--out", str(out)]) == 0
    assert "the mean of 2 models" in capsys.readouterr().out
    soup, a, b = (AutoUIModel.from_pretrained(d) for d in (out, tiny_model_dir, other))
    w = soup.projector.linear_1.weight
    assert torch.allclose(w, 0.75 * a.projector.linear_1.weight + 0.25 * b.projector.linear_1.weight, atol=1e-6)
    assert json.loads((out / "soup.json").read_text()) == {"models": [str(tiny_model_dir), str(other)], "weights": [3.0, 1.0]}
    assert json.loads((out / "screen.json").read_text())["view"] == "area"
    shipped = tmp_path / "shipped"
    assert train_script("ship_model.py").main([str(out), "--out", str(shipped)]) == 0
    assert {"soup.json", "train_config.json", "screen.json"} <= {f.name for f in shipped.iterdir()}
    with pytest.raises(SystemExit, match="could not convert"):
        script.main([str(tiny_model_dir), str(other), "--weights", "1,x", "--out", str(tmp_path / "bad")])
    (other / "screen.json").write_text(json.dumps({"view": "task", "scale": 1.0}))
    with pytest.raises(SystemExit, match="screen.json differ"):
        script.main([str(tiny_model_dir), str(other), "--out", str(tmp_path / "bad")])
