"""One agent step: screenshot + goal + earlier actions -> the next action.

Also registers the learned model as policy "model" (`autoui.policy.make_policy`).

`predict_action` is the single place where a step's generation happens; `generate_ids`
is the one call to swap when a faster runtime (KV cache, batching) replaces the
reference `AutoUIModel.generate_greedy`. Everything around it (preprocessing, prompt,
decoding, parsing) stays shared with training, so inference sees exactly what training did.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from autoui.actions import Action, ParsedAction, format_autoui, parse_action
from autoui.model.preprocess import Letterbox, ScreenPreprocessor
from autoui.model.prompt import PromptLimits, build_inputs, decode_text
from autoui.model.tokenizer import ActionTokenizer
from autoui.policy import register_policy

log = logging.getLogger("autoui.agent")


@dataclass(frozen=True)
class Prediction:
    """The parsed next action, the raw generated text, and where the screen sat on the model image."""

    parsed: ParsedAction
    raw_text: str
    letterbox: Letterbox
    new_tokens: int

    @property
    def action(self) -> Action:
        """The predicted action (normalized (y, x) of the original screen)."""
        return self.parsed.action

    def autoui_text(self) -> str:
        """The action (and plan, if the model wrote one) in Auto-UI's text format."""
        return format_autoui(self.parsed.action, self.parsed.plan)

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly dict, with touch/lift also in pixels (x, y) of the input screen."""
        a, box = self.parsed.action, self.letterbox
        out: dict[str, Any] = {"action": a.to_dict(), "kind": a.kind, "text": self.autoui_text(),
                               "plan": [t.name for t in self.parsed.plan] if self.parsed.plan else None,
                               "raw": self.raw_text, "screen": {"width": box.screen_w, "height": box.screen_h}}
        if a.is_gesture:
            out["touch_px"] = list(a.touch_pixels(box.screen_w, box.screen_h))
            out["lift_px"] = list(a.lift_pixels(box.screen_w, box.screen_h))
        return out


def load_agent(directory: str | Path, device: str = "cpu") -> tuple[Any, ActionTokenizer]:
    """(model, tokenizer) from a directory written by `AutoUIModel.save_pretrained(dir, tokenizer)`."""
    from autoui.model.vlm import AutoUIModel

    tokenizer = ActionTokenizer.load(directory)
    model = AutoUIModel.from_pretrained(directory, device=device)
    model.eval()
    return model, tokenizer


def generate_ids(model: Any, pixel_values: torch.Tensor, input_ids: torch.Tensor, max_new_tokens: int,
                 eos_token_id: int) -> torch.Tensor:
    """New token ids [B, n] for left-padded prompts. The runtime swap point."""
    mask = torch.ones_like(input_ids)
    return model.generate_greedy(pixel_values, input_ids, mask, max_new_tokens=max_new_tokens,
                                 eos_token_id=eos_token_id)


def predict_action(model: Any, tokenizer: ActionTokenizer, screen: Any, goal: str,
                   history: Sequence[Action] = (), fmt: str = "compact",
                   limits: PromptLimits = PromptLimits()) -> Prediction:
    """The next action for one screen (path, PIL image or uint8 [H, W, 3] array).

    Raises `autoui.actions.ActionParseError` (its `.text` holds the raw output) when the
    model writes something that is not an action.
    """
    config = model.config
    pixels, box = ScreenPreprocessor.from_config(config)(screen)  # [3, S, S]
    ids = build_inputs(tokenizer, config, goal, history, fmt, limits)
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)  # [1, T]
    pixel_values = pixels[None].to(device=device, dtype=next(model.parameters()).dtype)  # [1, 3, S, S]
    with torch.no_grad():
        new = generate_ids(model, pixel_values, input_ids, limits.max_target_tokens, tokenizer.eos_id)
    row = new[0].tolist()
    raw = decode_text(tokenizer, row)
    log.debug("generated %d tokens: %r", len(row), raw)
    parsed = parse_action(raw)
    return Prediction(parsed, raw, box, len(row))


class ModelPolicy:
    """The learned model as an `autoui.policy.Policy`: one `predict_action` per step.

    An output that is not an action raises `ActionParseError` (the rollout loop records
    the episode as failed with the raw text) rather than being replaced by a guess.
    """

    def __init__(self, model: Any, tokenizer: ActionTokenizer, fmt: str = "compact",
                 limits: PromptLimits = PromptLimits()):
        self.model, self.tokenizer, self.fmt, self.limits = model, tokenizer, fmt, limits
        self.goal = ""
        self.last: Prediction | None = None  # the latest step's prediction (raw text, letterbox)

    def reset(self, goal: str) -> None:
        """Start an episode with this goal."""
        self.goal, self.last = goal, None

    def act(self, obs: Any, history: list[Action]) -> Action:
        """The next action for the observation's screenshot (normalized (y, x) of that screen)."""
        self.last = predict_action(self.model, self.tokenizer, obs.screenshot, self.goal or obs.goal,
                                   history, self.fmt, self.limits)
        return self.last.action


@register_policy("model")
def _model_policy(env: Any, model_path: str | Path | None = None, model_dir: str | Path | None = None,
                  fmt: str = "compact", device: str = "cpu") -> ModelPolicy:
    """`make_policy("model", env, model_path=DIR)` (`model_dir` is accepted as an alias)."""
    directory = model_path or model_dir
    if directory is None:
        raise ValueError("the model policy needs model_path=DIR (a directory from save_pretrained)")
    model, tokenizer = load_agent(directory, device=device)
    return ModelPolicy(model, tokenizer, fmt)


def _json_or_text(line: str) -> Any:
    import json

    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return line  # a bare action string such as `tap 219 502`; parse_action judges it


def read_history(text: str) -> list[Action]:
    """Actions from a history file's text, oldest first.

    Accepted: a JSON list, or one entry per line (JSON lines or bare action strings); each
    entry is an action string in either format (a plan prefix is ignored) or an
    `Action.to_dict()` object. Raises ValueError naming the offending entry.
    """
    import json

    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"history looks like a JSON list but is not valid JSON: {exc}") from None
    else:
        entries = [_json_or_text(line) for line in text.splitlines() if line.strip()]
    actions = []
    for i, entry in enumerate(entries):
        try:
            if isinstance(entry, str):
                actions.append(parse_action(entry).action)
            elif isinstance(entry, dict):
                actions.append(Action.from_dict(entry))
            else:
                raise ValueError(f"expected an action string or object, got {type(entry).__name__}")
        except ValueError as exc:  # ActionError and ActionParseError are ValueErrors
            raise ValueError(f"history entry {i + 1}: {exc}") from None
    return actions
