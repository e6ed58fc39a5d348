"""The box-text loss (autoui.train.box_text): image tokens under a text box must name its words."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from autoui.actions import Action, ActionType
from autoui.data.samples import Sample
from autoui.model.config import load_preset
from autoui.model.preprocess import letterbox_for
from autoui.model.tokenizer import ActionTokenizer
from autoui.train.box_text import BoxTextLoss, BoxTextSpec, box_patches, box_text_tensors


@pytest.fixture(scope="module")
def tok_cfg():
    tok = ActionTokenizer.load()
    return tok, load_preset("tiny").with_tokenizer(tok)


def _sample(texts, boxes, epoch=0):
    return Sample(episode_id="miniwob/click-test-2/1", step_id=0, dataset="miniwob",
                  image=np.zeros((210, 160, 3), np.uint8), goal="Click button ONE.", history=(),
                  plan=(ActionType.DUAL_POINT,), target=Action.tap(0.5, 0.5),
                  ui_positions=np.array(boxes, np.float32).reshape(-1, 4), ui_text=tuple(texts), epoch=epoch)


def test_box_patches_cover_the_box_on_the_letterboxed_grid(tok_cfg):
    _, cfg = tok_cfg
    side = cfg.vision.image_size // cfg.vision.patch_size
    lb = letterbox_for(210, 160, cfg.vision.image_size)  # narrower than tall: the right columns are padding
    assert box_patches((0.0, 0.0, 1e-3, 1e-3), lb, cfg) == [cfg.num_image_tokens - side * side]
    whole = box_patches((0.0, 0.0, 1.0, 1.0), lb, cfg)
    cols = {(i - (cfg.num_image_tokens - side * side)) % side for i in whole}
    assert len(whole) == side * len(cols) and max(cols) == (lb.content_w - 1) // cfg.vision.patch_size < side - 1
    assert box_patches((0.5, 0.5, 0.0, 0.1), lb, cfg) == []


def test_targets_pool_the_box_and_spread_over_its_tokens(tok_cfg):
    tok, cfg = tok_cfg
    s = _sample(["ONE", "", "a sentence far too long to be a word", "TWO"],
                [(0.1, 0.1, 0.1, 0.2), (0.3, 0.3, 0.1, 0.1), (0.5, 0.0, 0.1, 1.0), (0.7, 0.5, 0.1, 0.2)])
    lb = letterbox_for(210, 160, cfg.vision.image_size)
    pool, target = box_text_tensors(s, lb, cfg, tok, boxes=4)
    assert pool.shape == (4, cfg.num_image_tokens) and target.shape == (4, cfg.decoder.vocab_size)
    used = target.sum(-1) > 0
    assert used.tolist() == [True, True, False, False]  # two readable boxes, in a drawn order
    assert torch.allclose(pool[used].sum(-1), torch.ones(2)) and torch.allclose(target[used].sum(-1), torch.ones(2))
    named = {tok.decode(target[k].nonzero().flatten().tolist()).replace(" ", "") for k in range(2)}
    assert {"".join(sorted(n)) for n in named} == {"".join(sorted("ONE")), "".join(sorted("TWO"))}
    again, _ = box_text_tensors(s, lb, cfg, tok, boxes=4)
    assert torch.equal(pool, again)  # a pure function of (episode, step, epoch)


def test_loss_trains_the_image_tokens_toward_the_words(tok_cfg):
    from autoui.model.vlm import AutoUIModel

    tok, cfg = tok_cfg
    torch.manual_seed(0)
    model = AutoUIModel(cfg)
    loss_fn = BoxTextLoss(model, BoxTextSpec(weight=1.0, boxes=2))
    with pytest.raises(RuntimeError):
        loss_fn.loss({})
    lb = letterbox_for(210, 160, cfg.vision.image_size)
    s = _sample(["ONE", "TWO"], [(0.1, 0.1, 0.1, 0.2), (0.7, 0.5, 0.1, 0.2)])
    pool, target = box_text_tensors(s, lb, cfg, tok, boxes=2)
    batch = {"box_pool": pool[None], "box_target": target[None]}
    pixels = torch.zeros(1, 3, cfg.vision.image_size, cfg.vision.image_size)
    pixels[:, :, 10:30, 10:60] = 1.0
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        model.encode_images(pixels)
        loss = loss_fn.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 0.5
    model.encode_images(pixels)
    assert float(loss_fn.loss({"box_pool": pool[None] * 0, "box_target": target[None] * 0}).detach()) == 0.0
    loss_fn.close()
    model.encode_images(pixels)
    assert loss_fn._feats is None  # the hook is gone


def test_column_split_scores_each_patch_column_against_the_pieces_in_it(tok_cfg):
    tok, cfg = tok_cfg
    side = cfg.vision.image_size // cfg.vision.patch_size
    lb = letterbox_for(210, 160, cfg.vision.image_size)
    word = "facilisis"
    s = _sample([word, "a sentence far too long to be a word"], [(0.1, 0.0, 0.05, 0.6), (0.5, 0.0, 0.1, 1.0)])
    pool, target = box_text_tensors(s, lb, cfg, tok, boxes=side, split="column")
    used = target.sum(-1) > 0
    cols = [sorted({(int(i) - (cfg.num_image_tokens - side * side)) % side for i in pool[k].nonzero().flatten()})
            for k in range(side) if used[k]]
    assert all(len(c) == 1 for c in cols) and len({c[0] for c in cols}) == len(cols) >= 2  # one row per column
    assert torch.allclose(target[used].sum(-1), torch.ones(len(cols)))
    by_col = dict(zip((c[0] for c in cols), target[used]))
    first, last = by_col[min(by_col)], by_col[max(by_col)]
    pieces = tok.encode(word)
    assert first[pieces[0]] > 0 and first[pieces[-1]] == 0  # the word's start is in its first column ...
    assert last[pieces[-1]] > 0 and last[pieces[0]] == 0  # ... and its end in the last
    with pytest.raises(ValueError):
        box_text_tensors(s, lb, cfg, tok, boxes=2, split="letters")
