"""Prompt building, training examples, output decoding, and batch collation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from autoui.actions import Action, ActionParseError, ActionType
from autoui.data.collate import IGNORE_INDEX, CollateError, collate
from autoui.data.samples import Sample
from autoui.model.config import load_preset
from autoui.model.prompt import (
    ANSWER_MARKER,
    PromptError,
    PromptLimits,
    build_inputs,
    build_training_example,
    decode_action,
    prompt_text,
    text_ids,
)
from autoui.model.tokenizer import ActionTokenizer

HISTORY = [Action.tap(0.2191, 0.5017), Action.scroll("up"), Action.type("best pizza"), Action.enter()]


@pytest.fixture(scope="module")
def tok() -> ActionTokenizer:
    return ActionTokenizer.load()


@pytest.fixture(scope="module")
def config(tok):
    return load_preset("tiny").with_tokenizer(tok)


def _sample(goal: str = "open the  settings app", history=tuple(HISTORY)) -> Sample:
    return Sample(episode_id="e1", step_id=len(history), dataset="general", image=np.zeros((8, 4, 3), np.uint8),
                  goal=goal, history=history, plan=(ActionType.DUAL_POINT, ActionType.TYPE),
                  target=Action.tap(0.25, 0.5), ui_positions=np.zeros((0, 4), np.float32))


@pytest.mark.parametrize("fmt", ["compact", "autoui"])
def test_inputs_are_bos_images_then_the_prompt_text(tok, config, fmt):
    ids = build_inputs(tok, config, "open the  settings app", HISTORY, fmt)
    n_img = config.num_image_tokens
    assert ids[0] == tok.bos_id
    assert ids[1:1 + n_img] == [tok.image_token_id] * n_img
    assert tok.image_token_id not in ids[1 + n_img:]
    text = prompt_text("open the  settings app", HISTORY, fmt)
    assert ids[1 + n_img:] == tok.encode(text)  # untruncated: exactly the text's tokens
    # the same text the data layer's Sample renders, plus the answer marker
    assert text == _sample().prompt(fmt) + ANSWER_MARKER


def test_history_keeps_the_most_recent_actions(tok):
    ids = text_ids(tok, "goal", HISTORY, "compact", PromptLimits(max_history=2))
    assert tok.decode(ids) == prompt_text("goal", HISTORY[-2:], "compact")
    none = text_ids(tok, "goal", HISTORY, "compact", PromptLimits(max_history=0))
    assert tok.decode(none) == prompt_text("goal", [], "compact")


def test_long_prompts_drop_old_history_first_then_cut_the_goal(tok):
    limits = PromptLimits(max_text_tokens=40)
    history = [Action.tap(i / 10, 0.5) for i in range(8)]
    ids = text_ids(tok, "go", history, "compact", limits)
    text = tok.decode(ids)
    assert len(ids) <= 40 and text.endswith("\nGoal: go" + ANSWER_MARKER)
    assert "tap 700 500" in text and "tap 0 500" not in text  # newest kept, oldest dropped
    long_goal = "please " * 200 + "END"
    ids = text_ids(tok, long_goal, history, "compact", limits)
    text = tok.decode(ids)
    assert len(ids) == 40
    assert "Previous Actions: \nGoal: please please" in text and "END" not in text
    assert text.endswith(ANSWER_MARKER)  # the marker survives truncation


def test_the_text_budget_shrinks_to_fit_the_model_context(tok, config):
    import dataclasses

    limits = PromptLimits(max_text_tokens=600, max_target_tokens=96)
    ids = build_inputs(tok, config, "word " * 590, [], "compact", limits)
    assert len(ids) == config.decoder.max_position_embeddings - 96
    assert tok.decode(ids[-3:]).endswith(ANSWER_MARKER)
    small_ctx = dataclasses.replace(config, decoder=dataclasses.replace(config.decoder, max_position_embeddings=64))
    with pytest.raises(PromptError, match="max_position_embeddings"):
        build_inputs(tok, small_ctx, "goal", [], "compact", limits)


def test_mismatched_tokenizer_and_config_are_refused(tok, config):
    import dataclasses

    with pytest.raises(PromptError, match="with_tokenizer"):
        build_inputs(tok, load_preset("tiny"), "goal", [], "compact")  # tiny's own vocab is 256
    with pytest.raises(PromptError, match="image_token_id"):
        build_inputs(tok, dataclasses.replace(config, image_token_id=7), "goal", [], "compact")
    with pytest.raises(PromptError, match="format"):
        prompt_text("goal", [], "json")


@pytest.mark.parametrize("fmt", ["compact", "autoui"])
def test_training_example_masks_the_prompt_and_learns_target_and_eos(tok, config, fmt):
    sample = _sample()
    input_ids, labels = build_training_example(tok, config, sample, fmt, with_plan=True)
    prompt = build_inputs(tok, config, sample.goal, sample.history, fmt)
    assert len(input_ids) == len(labels)
    assert input_ids[: len(prompt)] == prompt
    assert labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    learned = labels[len(prompt):]
    assert learned == input_ids[len(prompt):] and learned[-1] == tok.eos_id
    assert tok.decode(learned) == sample.target_text(fmt, with_plan=True)
    assert decode_action(tok, learned).action == sample.target


def test_too_long_targets_are_refused_not_cut(tok, config):
    sample = Sample(**{**_sample().__dict__, "target": Action.type("x " * 200)})
    with pytest.raises(PromptError, match="max_target_tokens"):
        build_training_example(tok, config, sample, "compact")


def test_decode_action_stops_at_eos_and_reports_garbage(tok):
    ids = tok.encode("point type ; tap 250 500") + [tok.eos_id] + tok.encode("junk after eos")
    parsed = decode_action(tok, ids)
    assert parsed.action == Action.tap(0.25, 0.5)
    assert parsed.plan == (ActionType.DUAL_POINT, ActionType.TYPE) and parsed.fmt == "compact"
    assert decode_action(tok, tok.encode(prompt_text("g", [], "compact"))[:0] + tok.encode("back")).action == Action.back()
    with pytest.raises(ActionParseError) as err:
        decode_action(tok, tok.encode("tap the red thing") + [tok.eos_id])
    assert err.value.text == "tap the red thing"
    with pytest.raises(ActionParseError):
        decode_action(tok, [tok.eos_id])  # nothing generated


def test_collate_pads_right_for_training_and_left_for_generation():
    pixels = [torch.full((3, 4, 4), float(i)) for i in range(2)]
    batch = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "pixel_values": pixels[0]},
             {"input_ids": [8], "labels": [8], "pixel_values": pixels[1]}]
    right = collate(batch, pad_id=0)
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert right["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert right["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert right["pixel_values"].shape == (2, 3, 4, 4) and right["pixel_values"][1].eq(1).all()
    left = collate([{"input_ids": [5, 6, 7]}, {"input_ids": torch.tensor([8])}], pad_id=9, padding_side="left")
    assert left["input_ids"].tolist() == [[5, 6, 7], [9, 9, 8]]
    assert left["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert "labels" not in left and "pixel_values" not in left
    assert left["input_ids"].dtype == torch.long


def test_collate_rejects_inconsistent_batches():
    with pytest.raises(CollateError, match="empty"):
        collate([])
    with pytest.raises(CollateError, match="labels"):
        collate([{"input_ids": [1, 2], "labels": [1]}])
    with pytest.raises(CollateError, match="every example has labels"):
        collate([{"input_ids": [1], "labels": [1]}, {"input_ids": [2]}])
    with pytest.raises(CollateError, match="different shapes"):
        collate([{"input_ids": [1], "pixel_values": torch.zeros(3, 4, 4)},
                 {"input_ids": [2], "pixel_values": torch.zeros(3, 8, 8)}])
    with pytest.raises(CollateError, match="padding_side"):
        collate([{"input_ids": [1]}], padding_side="middle")
    with pytest.raises(CollateError, match="non-empty"):
        collate([{"input_ids": []}])


def test_a_collated_training_batch_runs_through_the_model(tok, config):
    from autoui.model.preprocess import ScreenPreprocessor
    from autoui.model.vlm import AutoUIModel

    torch.manual_seed(0)
    model = AutoUIModel(config)
    pre = ScreenPreprocessor.from_config(config)
    examples = []
    for goal, history in (("open settings", HISTORY), ("go back", [])):
        ids, labels = build_training_example(tok, config, _sample(goal, tuple(history)), "compact")
        examples.append({"input_ids": ids, "labels": labels, "pixel_values": pre(np.zeros((40, 20, 3), np.uint8))[0]})
    batch = collate(examples, pad_id=tok.pad_id)
    _, loss = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert torch.isfinite(loss) and loss.item() > 0
