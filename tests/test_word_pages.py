"""The word-pages term (autoui/train/word_pages.py): pages, the head, and the trainer's use of it."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from autoui.data.synthetic import generate_dataset
from autoui.model.config import load_preset
from autoui.model.preprocess import ScreenPreprocessor
from autoui.model.tokenizer import ActionTokenizer
from autoui.model.vlm import AutoUIModel
from autoui.train.config import TrainConfig, TrainConfigError
from autoui.train.loop import Trainer
from autoui.train.word_pages import (FONT, WordPageLoss, WordPageSpec, centre_cells, load_font, load_vocab,
                                     lorem_words, page_batch, piece_batch, word_pieces)

pytestmark = pytest.mark.skipif(not Path(FONT).is_file(), reason="needs fonts-liberation")


def test_miniwob_vocabulary_and_pages_name_every_word_where_it_is_drawn():
    words = lorem_words()
    assert len(words) == 169 and words == sorted(set(words)) and all(w == w.lower() for w in words)
    font = load_font(FONT, 14)
    a = page_batch(random.Random(3), 2, words, font, ScreenPreprocessor(224))
    b = page_batch(random.Random(3), 2, words, font, ScreenPreprocessor(224))
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # drawn from the rng alone
    pixels, page, y, x, k = a
    assert pixels.shape == (2, 3, 224, 224) and -1.0 <= float(pixels.min()) and float(pixels.max()) <= 1.0
    assert len(k) > 40 and set(page.tolist()) == {0, 1} and int(k.max()) < len(words)
    for i in range(len(k)):
        assert 0 < y[i] < 1 and 0 < x[i] < 1
        row, col = int(y[i] * 224), int(x[i] * 224)
        patch = pixels[page[i], :, max(0, row - 6):row + 7, max(0, col - 12):col + 13]
        assert patch.min() < 0  # ink near every labelled word's centre
    assert (pixels.amin(dim=1) == 1).float().mean() > 0.5  # mostly white pages
    cells = centre_cells(torch.tensor([0.0, 0.999, 0.5]), torch.tensor([0.0, 0.999, 0.26]), 16)
    assert cells.tolist() == [0, 255, 8 * 16 + 4]


def test_vocabulary_file_and_errors(tmp_path):
    f = tmp_path / "words.txt"
    f.write_text("Settings\nWi-Fi\n\nSettings\n")
    assert load_vocab(str(f)) == ["Settings", "Wi-Fi"]
    with pytest.raises(ValueError, match="neither"):
        load_vocab(str(tmp_path / "missing.txt"))
    f.write_text("one\n")
    with pytest.raises(ValueError, match="at least 2"):
        load_vocab(str(f))


def test_the_head_learns_and_gradients_reach_the_vision_tower():
    torch.manual_seed(0)
    model = AutoUIModel(load_preset("tiny"))
    term = WordPageLoss(model, WordPageSpec(1.0, pages=2))
    opt = torch.optim.AdamW(list(model.parameters()) + term.parameters(), lr=3e-3)
    first = None
    for step in range(25):
        loss = term.loss((0, step % 5))  # five page batches, revisited
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        if step == 0:
            assert model.vision.embeddings.patch_embedding.weight.grad.abs().sum() > 0
            assert model.projector.linear_1.weight.grad.abs().sum() > 0
            assert model.decoder.embed_tokens.weight.grad is None  # the decoder is not involved
        opt.step()
    assert float(term.loss((0, 0)).detach()) < 0.8 * first
    state = {k: v.clone() for k, v in term.state_dict().items()}
    other = WordPageLoss(model, WordPageSpec(1.0, pages=2))
    other.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(other.parameters(), term.parameters()))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("word_pages_data")
    generate_dataset(root / "train", episodes_per_dataset=3, seed=11, shards=2)
    return root / "train"


def _resume(run: Path, **override) -> TrainConfig:
    """The config `train/sft.py --resume RUN [flags]` builds (autoui.train.config.config_from_args)."""
    return TrainConfig.from_dict({**TrainConfig.load(run).to_dict(), "stop_after": 0, "resume": str(run),
                                  "out": str(run), **override})


def _train(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]


def test_trainer_logs_it_resumes_exactly_and_never_saves_the_head(data, tmp_path):
    common = dict(preset="tiny", data=(str(data),), steps=3, batch_size=2, grad_accum=2, warmup=1,
                  shuffle_buffer=16, seed=5, word_pages_weight=1.0, word_pages=2)
    full = Trainer(TrainConfig(out=str(tmp_path / "full"), **common))
    final = full.train()
    parts = tmp_path / "parts"
    assert Trainer(TrainConfig(out=str(parts), stop_after=1, save_every=1, **common)).train() is None
    resumed = Trainer(_resume(parts))
    assert resumed.word_pages is not None and resumed.step == 1
    resumed.train()
    a, b = _train(tmp_path / "full"), _train(parts)
    assert [(r["loss"], r["word_pages_loss"]) for r in a] == [(r["loss"], r["word_pages_loss"]) for r in b]
    assert all(r["word_pages_loss"] > 0 and r["loss"] > r["word_pages_loss"] for r in a)
    assert all(torch.equal(x, y) for x, y in zip(full.word_pages.parameters(), resumed.word_pages.parameters()))
    head_group = full.optimizer.param_groups[-1]  # the head starts from nothing: --word-pages-lr-scale x --lr
    assert head_group["params"][0] is full.word_pages.parameters()[0]
    assert head_group["initial_lr"] == pytest.approx(10 * full.cfg.lr)
    # training-only: the saved model has exactly the preset's parameters
    assert set(AutoUIModel.from_pretrained(final).state_dict()) == set(full.raw.state_dict())


def test_trainer_refuses_what_cannot_work(data, tmp_path):
    with pytest.raises(TrainConfigError, match="cache-vision-features"):
        Trainer(TrainConfig(preset="tiny", data=(str(data),), out=str(tmp_path / "a"), steps=1, word_pages_weight=1.0,
                            freeze_vision=True, cache_vision_features=True))
    with pytest.raises(TrainConfigError, match="neither"):
        Trainer(TrainConfig(preset="tiny", data=(str(data),), out=str(tmp_path / "b"), steps=1, word_pages_weight=1.0,
                            word_pages_vocab=str(tmp_path / "none.txt")))
    with pytest.raises(TrainConfigError, match="word_pages must be"):
        TrainConfig(preset="tiny", data=(str(data),), out=str(tmp_path / "c"), word_pages=0)
    plain = tmp_path / "plain"
    Trainer(TrainConfig(preset="tiny", data=(str(data),), out=str(plain), steps=2, stop_after=1, save_every=1)).train()
    with pytest.raises(TrainConfigError, match="on or off"):
        Trainer(_resume(plain, word_pages_weight=1.0))


# ---- the `pieces` target: image tokens meet the decoder's own piece embeddings -----------------------------

def test_word_pieces_are_the_pieces_a_goal_gives_the_word():
    tok = ActionTokenizer.load().backend
    seen = set()
    for seed in range(40):
        pieces = word_pieces(random.Random(seed), "aliquam", tok)
        spans = [(a, b) for _, a, b in pieces]
        assert spans[0][0] == 0 and spans[-1][1] == 7  # the pieces cover the word, in order, without gaps
        assert all(b1 == a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))
        ids = [t for t, _, _ in pieces]
        seen.add(tuple(ids))
        goal = tok.encode('Click on the link "aliquam".' if ids[0] != tok.token_to_id("Ġa") else "Select aliquam from",
                          add_special_tokens=False).ids
        assert any(goal[i:i + len(ids)] == ids for i in range(len(goal)))  # exactly as inside a goal
    assert len(seen) == 2  # both forms, quoted ('ali', 'qu', 'am') and after a space ('Ġa', 'li', 'qu', 'am')


def test_piece_batch_puts_each_piece_on_its_own_ink():
    tok = ActionTokenizer.load().backend
    font, pre = load_font(FONT, 14), ScreenPreprocessor(224)
    a = piece_batch(random.Random(4), 2, lorem_words(), font, pre, tok)
    assert all(torch.equal(x, y) for x, y in zip(a, piece_batch(random.Random(4), 2, lorem_words(), font, pre, tok)))
    pixels, page, y, x, ids = a
    words = page_batch(random.Random(4), 2, lorem_words(), font, pre)[-1]
    assert len(ids) > 2 * len(words) and int(ids.max()) < tok.get_vocab_size()  # words are 1-6 pieces
    for i in range(len(ids)):
        row, col = int(y[i] * 224), int(x[i] * 224)
        assert pixels[page[i], :, max(0, row - 6):row + 7, max(0, col - 4):col + 5].min() < 0  # ink under the piece


def test_pieces_target_learns_reads_the_embedding_table_and_resumes(data, tmp_path):
    torch.manual_seed(0)
    tokenizer = ActionTokenizer.load()
    model = AutoUIModel(load_preset("tiny").with_tokenizer(tokenizer))
    with pytest.raises(ValueError, match="tokenizer"):
        WordPageLoss(model, WordPageSpec(1.0, target="pieces"))
    with pytest.raises(ValueError, match="target"):
        WordPageSpec(1.0, target="letters")
    term = WordPageLoss(model, WordPageSpec(1.0, pages=2, target="pieces"), tokenizer=tokenizer)
    assert [n for n, _ in term.head.named_parameters()] == ["log_scale"]  # a temperature, nothing else
    opt = torch.optim.AdamW(list(model.parameters()) + term.parameters(), lr=3e-3)
    first = None
    for step in range(25):
        loss = term.loss((0, step % 5))
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        if step == 0:
            assert model.vision.embeddings.patch_embedding.weight.grad.abs().sum() > 0
            assert model.decoder.embed_tokens.weight.grad is None  # the table is read, never moved by this term
        opt.step()
    assert float(term.loss((0, 0)).detach()) < 0.8 * first
    common = dict(preset="tiny", data=(str(data),), steps=2, batch_size=2, warmup=1, shuffle_buffer=16, seed=5,
                  word_pages_weight=1.0, word_pages=1, word_pages_target="pieces")
    run = tmp_path / "pieces"
    assert Trainer(TrainConfig(out=str(run), stop_after=1, save_every=1, **common)).train() is None
    with pytest.raises(TrainConfigError, match="word-pages-target"):
        Trainer(_resume(run, word_pages_target="words"))
    resumed = Trainer(_resume(run))
    resumed.train()
    assert [r["word_pages_loss"] > 0 for r in _train(run)] == [True, True]
