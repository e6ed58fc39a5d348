"""train/probe_words.py: rendered pages carry the right labels, and every front end trains end to end."""
from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest
import torch

from autoui.model.config import load_preset
from autoui.model.tokenizer import ActionTokenizer
from autoui.model.vlm import AutoUIModel

SCRIPT = Path(__file__).resolve().parents[1] / "train" / "probe_words.py"


def _script():
    spec = importlib.util.spec_from_file_location("autoui_test_probe_words", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not Path(module.FONT).is_file():
        pytest.skip("Liberation Sans is not installed (it comes with Debian's chromium)")
    return module


def test_pages_hold_miniwobs_words_where_the_labels_say():
    script = _script()
    from PIL import ImageFont

    words = script.lorem_words()
    assert 150 < len(words) <= script.CLASSES and "lorem" in words and all(w == w.lower() for w in words)
    pixels, items = script.render_page(random.Random(0), words, ImageFont.truetype(script.FONT, script.FONT_PX))
    assert pixels.shape == (3, script.SIZE, script.SIZE) and pixels.min() >= -1 and pixels.max() <= 1
    assert len(items) > 20
    for y, x, k in items:
        assert 0 < y < 1 and 0 < x < 1 and 0 <= k < len(words)
        row, col = int(y * script.SIZE), int(x * script.SIZE)
        patch = pixels[:, max(0, row - 6):row + 7, max(0, col - 12):col + 13]
        assert patch.min() < 0  # ink near every labelled word's centre
    assert (pixels.amin(dim=0) == 1).float().mean() > 0.5  # mostly white page


def test_every_front_end_trains_and_reports(tmp_path, capsys):
    script = _script()
    tok = ActionTokenizer.load()
    torch.manual_seed(0)
    AutoUIModel(load_preset("default").with_tokenizer(tok)).save_pretrained(tmp_path / "model", tokenizer=tok)
    out = tmp_path / "probe.json"
    assert script.main(["--model", str(tmp_path / "model"), "--variants", "vit28,vit14,cnn,pool4,shuffle4",
                        "--steps", "2", "--batch", "1", "--test-pages", "1", "--eval-every", "1",
                        "--json", str(out)]) == 0
    result = json.loads(out.read_text())["results"]
    assert {n: r["tokens"] for n, r in result.items()} == {"vit28": 64, "vit14": 256, "cnn": 784, "pool4": 16,
                                                           "shuffle4": 49}
    for r in result.values():
        assert len(r["curve"]) == 2 and 0 <= r["accuracy"] <= 100
    assert "shuffle4" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown variant"):
        script.front_end("pool", str(tmp_path / "model"))
    tiny = tmp_path / "tiny"
    AutoUIModel(load_preset("tiny").with_tokenizer(tok)).save_pretrained(tiny, tokenizer=tok)
    with pytest.raises(SystemExit, match="224-px"):
        script.front_end("vit28", str(tiny))
