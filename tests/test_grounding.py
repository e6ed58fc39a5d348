"""The grounding loss: which patch a tap lands on, which positions ask, and that it scores the real attention logits."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from autoui.actions import Action
from autoui.data.samples import Sample
from autoui.model.config import load_preset
from autoui.model.layers import apply_rope
from autoui.model.preprocess import Letterbox
from autoui.model.tokenizer import ActionTokenizer
from autoui.model.vlm import AutoUIModel
from autoui.train.config import TrainConfig, TrainConfigError
from autoui.train.examples import BatchCollator, ExampleBuilder
from autoui.train.grounding import GroundingLoss, GroundingSpec, query_mask, tap_image_token


@pytest.fixture(scope="module")
def tok() -> ActionTokenizer:
    return ActionTokenizer.load()


@pytest.fixture()
def model(tok) -> AutoUIModel:
    torch.manual_seed(0)
    return AutoUIModel(load_preset("tiny").with_tokenizer(tok))


def _sample(target: Action, step: int = 0) -> Sample:
    rng = np.random.default_rng(step)
    image = rng.integers(0, 255, size=(210, 160, 3), dtype=np.uint8)  # MiniWoB's portrait screen
    return Sample(episode_id=f"ep{step}", step_id=step, dataset="miniwob", image=image, goal="Click the button ONE.",
                  history=(), plan=(target.action_type,), target=target,
                  ui_positions=np.zeros((0, 4), dtype=np.float32))


def test_tap_image_token_follows_the_letterbox(model):
    cfg = model.config  # tiny: 32 px image, 8 px patches -> a 4 x 4 grid
    box = Letterbox(screen_h=210, screen_w=160, image_size=32, content_h=32, content_w=24)
    assert tap_image_token((0.0, 0.0), box, cfg) == 0
    # the screen's right edge lands at x = 24/32 of the square: column 2, not 3
    assert tap_image_token((0.99, 0.99), box, cfg) == 3 * 4 + 2
    assert tap_image_token((0.5, 0.5), box, cfg) == 2 * 4 + 1
    clip = dataclasses.replace(cfg, feature_select="full",
                               vision=dataclasses.replace(cfg.vision, variant="clip"))
    assert clip.num_image_tokens == 17 and tap_image_token((0.0, 0.0), box, clip) == 1  # after the class token


def test_query_mask_marks_the_positions_that_predict_coordinates(tok):
    coords = frozenset(i for i in range(tok.vocab_size) if tok.decode([i]).strip().isdigit())
    labels = [-100, -100] + tok.encode("point ; tap 219 52") + [tok.eos_id]
    mask = query_mask(labels, coords)
    predicted = [tok.decode([labels[t + 1]]) for t, m in enumerate(mask) if m]
    assert predicted == ["2", "1", "9", "5", "2"]
    assert mask[-1] == 0 and len(mask) == len(labels)


def test_builder_emits_targets_only_for_taps(tok, model):
    builder = ExampleBuilder(tok, model.config, grounding=True)
    tap = builder(_sample(Action.tap(0.5, 0.5), 0))
    typed = builder(_sample(Action.type("hello 42"), 1))
    assert tap["ground_patch"] == 2 * 4 + 1 and sum(tap["ground_query"]) == 6  # "500" and "500"
    assert typed["ground_patch"] == -1 and not any(typed["ground_query"])  # digits in typed text are not a place
    assert "ground_patch" not in ExampleBuilder(tok, model.config)(_sample(Action.tap(0.5, 0.5)))
    batch = BatchCollator(pad_id=tok.pad_id)([tap, typed])
    assert batch["ground_patch"].tolist() == [9, -1]
    assert batch["ground_query"].shape == batch["input_ids"].shape


def train_aux(model, batch, aux, steps: int, lr: float = 1e-2) -> list[float]:
    """Adam on an auxiliary loss alone for `steps` steps on one batch -> the losses."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], batch["labels"], return_logits=False)
        loss = aux.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def check_empty_batch(model, batch, aux) -> None:
    """Before the forward: an error naming it; after it, on a batch with nothing to score: 0 with a graph."""
    with pytest.raises(RuntimeError, match="forward"):
        aux.loss(batch)
    model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], batch["labels"], return_logits=False)
    loss = aux.loss(batch)
    assert loss.item() == 0.0 and loss.requires_grad


def _full_head_logits(model, x, cos, sin, head):
    """The chosen head's attention logits over every key, computed the way the decoder does."""
    attn = model.decoder.layers[1].self_attn
    b, t, _ = x.shape
    q = attn.q_proj(x).view(b, t, attn.num_heads, attn.head_dim).transpose(1, 2)
    k = attn.k_proj(x).view(b, t, attn.num_kv_heads, attn.head_dim).transpose(1, 2)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    k = k.repeat_interleave(attn.num_heads // attn.num_kv_heads, dim=1)
    return (q @ k.transpose(-1, -2))[:, head] / attn.head_dim ** 0.5  # [B, T, T]


def test_loss_scores_the_heads_own_attention_logits(tok, model):
    builder = ExampleBuilder(tok, model.config, grounding=True)
    batch = BatchCollator(pad_id=tok.pad_id)([builder(_sample(Action.tap(0.2, 0.9), 0)),
                                              builder(_sample(Action.tap(0.8, 0.1), 1))])
    spec = GroundingSpec(weight=1.0, layers=(1,), head=3)  # head 3 reads kv head 1 (GQA)
    ground = GroundingLoss(model, spec)
    model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], batch["labels"], return_logits=False)
    x, cos, sin = ground._inputs[1]
    full = _full_head_logits(model, x, cos, sin, head=3)
    is_image = batch["input_ids"] == model.config.image_token_id
    rows, cols = batch["ground_query"].bool().nonzero(as_tuple=True)
    expected = torch.stack([full[r, c][is_image[r]] for r, c in zip(rows.tolist(), cols.tolist())])
    loss = ground.loss(batch)
    want = torch.nn.functional.cross_entropy(expected, batch["ground_patch"][rows])
    assert torch.allclose(loss, want, atol=1e-5)
    ground.close()
    assert not model.decoder.layers[1].self_attn._forward_pre_hooks


def test_loss_trains_the_head_to_point(tok, model):
    builder = ExampleBuilder(tok, model.config, grounding=True)
    batch = BatchCollator(pad_id=tok.pad_id)([builder(_sample(Action.tap(0.1 + 0.25 * i, 0.6), i)) for i in range(4)])
    ground = GroundingLoss(model, GroundingSpec(weight=1.0, layers=(0, 1)))
    losses = train_aux(model, batch, ground, 15)
    assert losses[0] > 2.0 and losses[-1] < 0.5 * losses[0]


def test_a_batch_without_taps_gives_zero_and_misuse_is_an_error(tok, model):
    builder = ExampleBuilder(tok, model.config, grounding=True)
    batch = BatchCollator(pad_id=tok.pad_id)([builder(_sample(Action.back(), 0))])
    check_empty_batch(model, batch, GroundingLoss(model, GroundingSpec(weight=1.0, layers=(1,))))
    with pytest.raises(ValueError, match="layers must be in 0..1"):
        GroundingLoss(model, GroundingSpec(weight=1.0, layers=(2,)))


def test_train_config_parses_the_layers(tmp_path):
    cfg = TrainConfig(data=("d",), out="o", grounding_weight=0.5, grounding_layers="1, 2")
    assert cfg.grounding_layers == (1, 2)
    assert json.loads(json.dumps(cfg.to_dict()))["grounding_layers"] == [1, 2]
    with pytest.raises(TrainConfigError, match="integers"):
        TrainConfig(data=("d",), out="o", grounding_layers="one")
    with pytest.raises(TrainConfigError, match="grounding_weight"):
        TrainConfig(data=("d",), out="o", grounding_weight=-1.0)


def test_readout_asks_the_heads_output_for_row_and_column(tok, model):
    builder = ExampleBuilder(tok, model.config, grounding=True)
    batch = BatchCollator(pad_id=tok.pad_id)([builder(_sample(Action.tap(0.2, 0.9), 0)),
                                              builder(_sample(Action.tap(0.8, 0.1), 1))])
    ground = GroundingLoss(model, GroundingSpec(weight=1.0, layers=(1,), head=3, readout=True))
    model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], batch["labels"], return_logits=False)
    x, cos, sin = ground._inputs[1]
    attn = model.decoder.layers[1].self_attn
    is_image = batch["input_ids"] == model.config.image_token_id
    rows, cols = batch["ground_query"].bool().nonzero(as_tuple=True)
    logits = torch.stack([_full_head_logits(model, x, cos, sin, 3)[r, c][is_image[r]] for r, c in zip(rows.tolist(), cols.tolist())])
    v = attn.v_proj(x).view(*x.shape[:2], attn.num_kv_heads, attn.head_dim)[:, :, 1]  # head 3 -> kv head 1
    out = torch.stack([logits[i].softmax(-1) @ v[r][is_image[r]] for i, r in enumerate(rows.tolist())])
    patch = batch["ground_patch"][rows]  # a 4 x 4 grid: row = patch // 4, column = patch % 4
    pointing = torch.nn.functional.cross_entropy(logits, patch)
    readout = (torch.nn.functional.cross_entropy(out[:, :4], patch // 4)
               + torch.nn.functional.cross_entropy(out[:, 4:8], patch % 4))
    assert torch.allclose(ground.loss(batch), (pointing + readout) / 2, atol=1e-5)
