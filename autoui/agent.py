"""One agent step: screenshot + goal + earlier actions -> the next action.

Also registers the learned model as policy "model" (`autoui.policy.make_policy`).

`predict_action` is the single place where a step's generation happens; `generate_ids`
runs it on the serving runtime (`autoui.runtime.engine.Engine`: KV cache, each screenshot
encoded once, greedy, valid actions by construction unless `RuntimeOptions.constrained` is
off). The reference `AutoUIModel.generate_greedy` stays for tests and comparisons only.
Everything around it (preprocessing, prompt, decoding, parsing) stays shared with training,
so inference sees exactly what training did.
"""
from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from autoui.actions import Action, ParsedAction, format_autoui, parse_action
from autoui.data.screen import model_view
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


SERVING_DTYPES = ("auto", "float32", "bfloat16", "float16")


def serving_dtype(device: str | torch.device = "cpu", dtype: str = "auto") -> torch.dtype:
    """The weights' dtype for serving: `dtype`, or for "auto" bf16 on CUDA and fp32 on CPU.

    On CPU, one-row (decode) matmuls are ~3x slower in bf16 than in fp32 even with AMX,
    while many-row (prefill) ones are ~5x faster with AMX (~2.3x with AVX512-BF16): the runtime engine then prefills
    with a bf16 twin of the fp32 model (`autoui.runtime.engine.EngineConfig.prefill_dtype`).
    """
    if dtype not in SERVING_DTYPES:
        raise ValueError(f"dtype must be one of {SERVING_DTYPES}, got {dtype!r}")
    if dtype != "auto":
        return getattr(torch, dtype)
    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


def load_agent(directory: str | Path, device: str = "cpu", dtype: str = "auto") -> tuple[Any, ActionTokenizer]:
    """(model, tokenizer) from a directory written by `AutoUIModel.save_pretrained(dir, tokenizer)`.

    Weights are cast to `serving_dtype(device, dtype)`, which is logged.
    """
    from autoui.model.vlm import AutoUIModel

    tokenizer = ActionTokenizer.load(directory)
    torch_dtype = serving_dtype(device, dtype)
    model = AutoUIModel.from_pretrained(directory, device=device, dtype=torch_dtype)
    model.eval()
    log.info("serving %s on %s in %s", directory, device, str(torch_dtype).removeprefix("torch."))
    return model, tokenizer


TRAINED_DEFAULTS = {"fmt": "compact", "history": 8, "plan": 4}


def _train_config(directory: str | Path) -> dict[str, Any]:
    """The model directory's train_config.json as a dict; {} when missing or unreadable."""
    import json

    try:
        saved = json.loads((Path(directory) / "train_config.json").read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def trained_settings(directory: str | Path) -> dict[str, Any]:
    """fmt / history / plan a saved model was trained with (its train_config.json), else the defaults.

    Serving must build the prompt the way training did: the same action format and the same
    number of previous actions (a model trained on 12 cannot count 12 taps from 8).
    """
    saved = _train_config(directory)
    settings = dict(TRAINED_DEFAULTS, fmt=_format_of(saved, TRAINED_DEFAULTS["fmt"]))
    for key in ("history", "plan"):
        value = saved.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            settings[key] = value
    return settings


def trained_format(directory: str | Path, default: str = "compact") -> str:
    """The action format a saved model was trained with (its train_config.json "fmt"), else `default`."""
    return _format_of(_train_config(directory), default)


def _format_of(saved: dict[str, Any], default: str) -> str:
    fmt = saved.get("fmt")
    return fmt if fmt in ("compact", "autoui") else default


def trained_limits(directory: str | Path) -> PromptLimits:
    """PromptLimits whose history length is the one the model was trained with."""
    return PromptLimits(max_history=trained_settings(directory)["history"])


REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "default-model"
KV_CACHE_KINDS = ("plain", "int8", "int4", "fp8")


def default_model_dir() -> Path | None:
    """The repo's shipped model (`models/default-model/`) when it holds a model, else None."""
    if (DEFAULT_MODEL_DIR / "config.json").is_file() and (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
        return DEFAULT_MODEL_DIR
    return None


@dataclass(frozen=True)
class RuntimeOptions:
    """How `predict_action` generates: KV-cache kind and constrained decoding (on by default)."""

    kv_cache: str = "plain"
    constrained: bool = True
    prefill_dtype: str = "auto"  # see autoui.runtime.engine.prefill_model: bf16 prefill on AMX or AVX512-BF16 CPUs
    type_from_goal: bool = False  # typed text must be a span the goal quotes (autoui.runtime.copy_text)

    def __post_init__(self) -> None:
        from autoui.runtime.engine import PREFILL_DTYPES

        if self.kv_cache not in KV_CACHE_KINDS:
            raise ValueError(f"kv_cache must be one of {KV_CACHE_KINDS}, got {self.kv_cache!r}")
        if self.prefill_dtype not in PREFILL_DTYPES:
            raise ValueError(f"prefill_dtype must be one of {PREFILL_DTYPES}, got {self.prefill_dtype!r}")


# engines and constraints are built once per model / tokenizer and reused by every step
_ENGINES: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
_CONSTRAINTS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def action_constraint(tokenizer: ActionTokenizer, fmt: str) -> Any:
    """The (cached) `ActionConstraint` of `fmt` for this tokenizer; a plan prefix is optional."""
    from autoui.runtime.constrained import ActionConstraint

    per_tok = _CONSTRAINTS.setdefault(tokenizer, {})
    if fmt not in per_tok:
        per_tok[fmt] = ActionConstraint.from_tokenizer(tokenizer, fmt)
    return per_tok[fmt]


def _engine(model: Any, batch: int, kv_cache: str, constraint: Any, prefill_dtype: str = "auto") -> Any:
    """A cached engine with room for `batch` sequences (capacity grows in powers of two)."""
    from autoui.runtime.engine import Engine, EngineConfig

    per_model = _ENGINES.setdefault(model, {})
    key = (kv_cache, id(constraint), prefill_dtype)
    engine = per_model.get(key)
    if engine is None or engine.config.max_batch < batch:
        cap = 1 << max(0, batch - 1).bit_length()
        cfg = EngineConfig(max_batch=cap, max_seq_len=model.config.decoder.max_position_embeddings,
                           cache_kind=kv_cache, prefill_dtype=prefill_dtype)
        engine = per_model[key] = Engine(model, cfg, constraint=constraint)
    return engine


def generate_ids(model: Any, pixel_values: torch.Tensor, input_ids: torch.Tensor, max_new_tokens: int,
                 eos_token_id: int, constraint: Any = None, kv_cache: str = "plain",
                 prefill_dtype: str = "auto", type_candidates: Sequence[Any] | None = None) -> torch.Tensor:
    """New token ids [B, n] (pad after a row's eos) for prompts [B, T] (no padding) and screens [B, 3, S, S].

    The serving path: the runtime engine with a `kv_cache` cache, greedy, under
    `constraint` (an `ActionConstraint`) when given; `prefill_dtype` as in `RuntimeOptions`;
    `type_candidates[b]` (strings, or None) limits row b's typed text (needs a compact constraint).
    """
    from autoui.runtime.engine import Request

    if eos_token_id != model.config.eos_token_id:
        raise ValueError(f"eos_token_id {eos_token_id} differs from the model's {model.config.eos_token_id}")
    engine = _engine(model, input_ids.shape[0], kv_cache, constraint, prefill_dtype)
    cands = list(type_candidates) if type_candidates is not None else [None] * input_ids.shape[0]
    reqs = [Request(row.tolist(), px, max_new_tokens=max_new_tokens, type_candidates=c)
            for row, px, c in zip(input_ids.cpu(), pixel_values, cands)]
    try:
        rows = engine.generate(reqs)
    finally:
        engine.reset()  # an error mid-way must not leave requests or slots behind
    n = max(len(r) for r in rows)
    out = torch.full((len(rows), n), model.config.pad_token_id, dtype=torch.long)
    for b, r in enumerate(rows):
        out[b, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def predict_action(model: Any, tokenizer: ActionTokenizer, screen: Any, goal: str,
                   history: Sequence[Action] = (), fmt: str = "compact",
                   limits: PromptLimits = PromptLimits(), runtime: RuntimeOptions = RuntimeOptions()) -> Prediction:
    """The next action for one screen (path, PIL image or uint8 [H, W, 3] array).

    With `runtime.constrained` (the default) the output is a valid action by construction.
    Without it, raises `autoui.actions.ActionParseError` (its `.text` holds the raw output)
    when the model writes something that is not an action.
    """
    config = model.config
    pixels, box = ScreenPreprocessor.from_config(config)(screen)  # [3, S, S]
    ids = build_inputs(tokenizer, config, goal, history, fmt, limits)
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)  # [1, T]
    pixel_values = pixels[None].to(device=device, dtype=next(model.parameters()).dtype)  # [1, 3, S, S]
    constraint = action_constraint(tokenizer, fmt) if runtime.constrained else None
    cands = None
    if runtime.type_from_goal and constraint is not None:
        from autoui.runtime.copy_text import untyped_quotes

        cands = [untyped_quotes(goal, history) or None]
    with torch.no_grad():
        new = generate_ids(model, pixel_values, input_ids, limits.max_target_tokens, tokenizer.eos_id,
                           constraint=constraint, kv_cache=runtime.kv_cache, prefill_dtype=runtime.prefill_dtype,
                           type_candidates=cands)
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
                 limits: PromptLimits = PromptLimits(), runtime: RuntimeOptions = RuntimeOptions()):
        self.model, self.tokenizer, self.fmt, self.limits = model, tokenizer, fmt, limits
        self.runtime = runtime
        self.goal = ""
        self.last: Prediction | None = None  # the latest step's prediction (raw text, letterbox)

    def reset(self, goal: str) -> None:
        """Start an episode with this goal."""
        self.goal, self.last = goal, None

    def act(self, obs: Any, history: list[Action]) -> Action:
        """The next action for the observation's screenshot (normalized (y, x) of that screen)."""
        self.last = predict_action(self.model, self.tokenizer, obs.screenshot, self.goal or obs.goal,
                                   history, self.fmt, self.limits, self.runtime)
        return self.last.action


@register_policy("model")
def _model_policy(env: Any, model_path: str | Path | None = None, model_dir: str | Path | None = None,
                  fmt: str | None = None, device: str = "cpu", kv_cache: str = "plain",
                  constrained: bool = True, dtype: str = "auto", type_from_goal: bool = False) -> ModelPolicy:
    """`make_policy("model", env, model_path=DIR)` (`model_dir` is an alias; default: `default_model_dir()`).

    `fmt` None: the format the model was trained with; the prompt keeps as many previous
    actions as training did (both from `trained_settings`).
    """
    directory = model_path or model_dir or default_model_dir()
    if directory is None:
        raise ValueError(f"the model policy needs model_path=DIR (a directory from save_pretrained); "
                         f"no shipped model at {DEFAULT_MODEL_DIR}")
    shown = getattr(env, "view", None)  # MiniWoBEnv's; other environments have one kind of screen
    trained_view = model_view(directory, default=shown or "task")
    if shown is not None and trained_view != shown:
        log.warning("the model in %s learned on %r screens but the environment shows %r ones", directory,
                    trained_view, shown)
    runtime = RuntimeOptions(kv_cache=kv_cache, constrained=constrained, type_from_goal=type_from_goal)
    model, tokenizer = load_agent(directory, device=device, dtype=dtype)
    trained = trained_settings(directory)
    return ModelPolicy(model, tokenizer, fmt or trained["fmt"], PromptLimits(max_history=trained["history"]), runtime)


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
