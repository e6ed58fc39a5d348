"""Prompt text, model input ids, training examples, and reading the model's output.

The decoder sees, in this order (LLaVA layout):

    <s> <image> x N_img  "Previous Actions: A1\\nA2...\\nGoal: GOAL\\nAction:"  TARGET </s>

- The history lines are earlier actions rendered in the chosen format ("compact" or
  "autoui", without plans), the most recent `max_history` only, oldest first (Auto-UI's
  "Previous Actions ... Goal ..." text).
- "\\nAction:" marks where the prompt ends, so a truncated goal is never mistaken for an
  unfinished one and the model always knows when to start answering.
- When the text is too long (`PromptLimits.max_text_tokens`), the oldest history actions
  are dropped first, then the goal's tail is cut (its start says what to do).
- Training labels are -100 on everything before TARGET; TARGET and </s> are learned.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from autoui.actions import Action, ParsedAction, format_action, parse_action
from autoui.data.samples import normalize_space
from autoui.model.tokenizer import ActionTokenizer

IGNORE_INDEX = -100
"""Label for positions without loss (the same value as `autoui.model.vlm.IGNORE_INDEX`)."""
HISTORY_HEADER = "Previous Actions: "
GOAL_HEADER = "\nGoal:"
ANSWER_MARKER = "\nAction:"
FORMATS = ("compact", "autoui")


class PromptError(ValueError):
    """Inputs that cannot become a valid model prompt (mismatched ids, target too long...)."""


@dataclass(frozen=True)
class PromptLimits:
    """How much history and text the prompt keeps, and how long a target may be."""

    max_history: int = 8
    max_text_tokens: int = 512
    max_target_tokens: int = 96

    def __post_init__(self) -> None:
        if not isinstance(self.max_history, int) or self.max_history < 0:
            raise ValueError(f"max_history must be an int >= 0, got {self.max_history!r}")
        for name in ("max_text_tokens", "max_target_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 16:
                raise ValueError(f"{name} must be an int >= 16, got {value!r}")


def _check_fmt(fmt: str) -> None:
    if fmt not in FORMATS:
        raise PromptError(f"format must be one of {FORMATS}, got {fmt!r}")


def _head_text(history: Sequence[Action], fmt: str) -> str:
    return HISTORY_HEADER + "\n".join(format_action(a, fmt) for a in history) + GOAL_HEADER


def prompt_text(goal: str, history: Sequence[Action], fmt: str = "compact") -> str:
    """The full prompt text (no truncation): `Sample.prompt(fmt)`'s text plus the answer marker.

    The goal's whitespace is normalised exactly as `autoui.data.samples.normalize_space` does.
    """
    _check_fmt(fmt)
    return _head_text(history, fmt) + " " + normalize_space(goal) + ANSWER_MARKER


def check_ids(tokenizer: ActionTokenizer, config: Any) -> None:
    """Raise PromptError unless the tokenizer's special ids and size match the model config."""
    pairs = {"image_token_id": (tokenizer.image_token_id, config.image_token_id),
             "bos_token_id": (tokenizer.bos_id, config.bos_token_id),
             "eos_token_id": (tokenizer.eos_id, config.eos_token_id),
             "pad_token_id": (tokenizer.pad_id, config.pad_token_id)}
    bad = {k: v for k, v in pairs.items() if v[0] != v[1]}
    if bad:
        raise PromptError(f"tokenizer and model config disagree on {bad} (tokenizer, config); "
                          "build the config with ModelConfig.with_tokenizer(tokenizer)")
    if tokenizer.vocab_size > config.decoder.vocab_size:
        raise PromptError(f"tokenizer has {tokenizer.vocab_size} ids but the model only {config.decoder.vocab_size}; "
                          "build the config with ModelConfig.with_tokenizer(tokenizer)")


def text_ids(tokenizer: ActionTokenizer, goal: str, history: Sequence[Action], fmt: str = "compact",
             limits: PromptLimits = PromptLimits()) -> list[int]:
    """Token ids of `prompt_text(...)`, truncated to `limits` (history first, then the goal's tail).

    Without truncation this equals `tokenizer.encode(prompt_text(goal, history, fmt))`: the
    pieces are split where byte-level pre-tokenization splits anyway.
    """
    _check_fmt(fmt)
    if not isinstance(goal, str):
        raise PromptError(f"goal must be a string, got {type(goal).__name__}")
    history = list(history)[-limits.max_history:] if limits.max_history else []
    goal_ids = tokenizer.encode(" " + normalize_space(goal))
    answer = tokenizer.encode(ANSWER_MARKER)
    head = tokenizer.encode(_head_text(history, fmt))
    while history and len(head) + len(goal_ids) + len(answer) > limits.max_text_tokens:
        history = history[1:]  # the oldest action matters least
        head = tokenizer.encode(_head_text(history, fmt))
    budget = limits.max_text_tokens - len(head) - len(answer)
    return head + goal_ids[:budget] + answer


def build_inputs(tokenizer: ActionTokenizer, config: Any, goal: str, history: Sequence[Action],
                 fmt: str = "compact", limits: PromptLimits = PromptLimits()) -> list[int]:
    """[bos] + [image] * config.num_image_tokens + prompt text ids (see the module docstring).

    The text gets at most `limits.max_text_tokens`, and less when the model's context
    (`config.decoder.max_position_embeddings`) must also hold the image tokens and a
    `limits.max_target_tokens` answer; the usual truncation order applies.
    """
    check_ids(tokenizer, config)
    n_img = config.num_image_tokens
    room = config.decoder.max_position_embeddings - 1 - n_img - limits.max_target_tokens
    if room < 16:
        raise PromptError(f"max_position_embeddings={config.decoder.max_position_embeddings} leaves {room} text "
                          f"tokens after {n_img} image tokens and a {limits.max_target_tokens}-token answer")
    if room < limits.max_text_tokens:
        limits = dataclasses.replace(limits, max_text_tokens=room)
    return [tokenizer.bos_id] + [tokenizer.image_token_id] * n_img + text_ids(tokenizer, goal, history, fmt, limits)


def target_ids(tokenizer: ActionTokenizer, target_text: str, limits: PromptLimits = PromptLimits()) -> list[int]:
    """Ids of a target action string plus eos; PromptError if longer than max_target_tokens."""
    ids = tokenizer.encode(target_text) + [tokenizer.eos_id]
    if len(ids) > limits.max_target_tokens:
        # cutting the target would teach a malformed action: refuse, let the caller skip it
        raise PromptError(f"target of {len(ids)} tokens exceeds max_target_tokens={limits.max_target_tokens}: "
                          f"{target_text[:80]!r}")
    return ids


def build_training_example(tokenizer: ActionTokenizer, config: Any, sample: Any, fmt: str = "compact",
                           with_plan: bool = True,
                           limits: PromptLimits = PromptLimits()) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for one `autoui.data.samples.Sample`-like object.

    `sample` needs `goal`, `history` (Actions) and `target_text(fmt, with_plan=...)`.
    Labels are IGNORE_INDEX over bos, image and prompt tokens; the target and eos are learned.
    """
    prompt = build_inputs(tokenizer, config, sample.goal, sample.history, fmt, limits)
    answer = target_ids(tokenizer, sample.target_text(fmt, with_plan=with_plan), limits)
    return prompt + answer, [IGNORE_INDEX] * len(prompt) + answer


def decode_text(tokenizer: ActionTokenizer, ids: Sequence[int]) -> str:
    """Generated ids -> text, stopping at the first eos and dropping special tokens."""
    ids = [int(i) for i in ids]
    if tokenizer.eos_id in ids:
        ids = ids[: ids.index(tokenizer.eos_id)]
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def decode_action(tokenizer: ActionTokenizer, ids: Sequence[int]) -> ParsedAction:
    """Generated ids -> ParsedAction via `autoui.actions.parse_action` (ActionParseError keeps the text)."""
    return parse_action(decode_text(tokenizer, ids))
