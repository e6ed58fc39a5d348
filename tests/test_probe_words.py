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


def test_pages_come_from_the_training_term_renderer():
    """The probe's pages are the word-pages loss's pages (tests/test_word_pages.py checks their labels)."""
    script = _script()
    from PIL import ImageFont

    from autoui.model.preprocess import ScreenPreprocessor
    from autoui.train.word_pages import page_batch

    words = script.lorem_words()
    assert 150 < len(words) <= script.CLASSES
    font = ImageFont.truetype(script.FONT, script.FONT_PX)
    pixels, page, y, x, k = script.pages(random.Random(0), 2, words, font)
    assert pixels.shape == (2, 3, script.SIZE, script.SIZE) and len(k) > 40
    assert torch.equal(pixels, page_batch(random.Random(0), 2, words, font, ScreenPreprocessor(script.SIZE))[0])


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


def test_freeze_tower_trains_the_head_alone(tmp_path, monkeypatch):
    script = _script()
    tok = ActionTokenizer.load()
    torch.manual_seed(0)
    AutoUIModel(load_preset("default").with_tokenizer(tok)).save_pretrained(tmp_path / "model", tokenizer=tok)
    probes = []
    real = script.WordProbe

    def keep(tokens):
        probes.append(real(tokens))
        return probes[-1]

    monkeypatch.setattr(script, "WordProbe", keep)
    out = tmp_path / "frozen.json"
    assert script.main(["--model", str(tmp_path / "model"), "--variants", "vit28", "--freeze-tower", "--steps", "2",
                        "--batch", "1", "--test-pages", "1", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["freeze_tower"] is True
    trained = probes[0]
    start = AutoUIModel.from_pretrained(tmp_path / "model").vision.state_dict()
    assert all(torch.equal(v.float(), start[k].float()) for k, v in trained.tokens.vision.state_dict().items())
    assert not any(p.requires_grad for p in trained.tokens.parameters())
    assert all(p.requires_grad for p in trained.head.parameters())
