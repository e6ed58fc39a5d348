"""`TrainConfig`: every knob of supervised fine-tuning, validated, with its CLI generated from the fields.

`train/sft.py` builds its argparse parser with `add_dataclass_arguments(parser, TrainConfig)`
so the flags can never drift from the dataclass; the resolved config is saved as
`RUN_DIR/train_config.json` and read back by `--resume`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMATS = ("compact", "autoui")
PRECISIONS = ("auto", "no", "bf16", "fp16")
WORD_PAGE_TARGETS = ("words", "pieces")  # autoui/train/word_pages.py
CONFIG_FILE = "train_config.json"


class TrainConfigError(ValueError):
    """A training configuration that cannot work (the message names the field and why)."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise TrainConfigError(msg)


def _name_values(spec: str | dict[str, float], flag: str, form: str) -> list[tuple[str, float]]:
    """"a=1,b=0.5" (or a dict) -> [(name, number)]; a malformed part or value is a TrainConfigError."""
    items = list(spec.items()) if isinstance(spec, dict) else [part.partition("=")[::2] for part in str(spec).split(",")]
    out = []
    for name, value in items:
        name = str(name).strip()
        _check(bool(name) and str(value).strip() != "", f"{flag} expects {form}[,{form}...], got {spec!r}")
        try:
            out.append((name, float(value)))
        except ValueError:
            raise TrainConfigError(f"{flag} value for {name!r} must be a number, got {value!r}") from None
    return out


def parse_sample_spec(spec: str | dict[str, float] | None) -> dict[str, float]:
    """Parse "google_apps=0.1,install=0.5" into {dataset: keep fraction}; fractions in (0, 1]."""
    out: dict[str, float] = {}
    for name, frac in _name_values(spec, "--sample", "dataset=fraction") if spec else []:
        _check(0.0 < frac <= 1.0, f"--sample fraction for {name!r} must be in (0, 1], got {frac}")
        out[name] = frac
    return out


def parse_weight_spec(spec: str | dict[str, float] | None) -> dict[str, float]:
    """Parse "click-tab-2=2,click-test=0.5" into {task or dataset: weight}; weights > 0 and finite."""
    out: dict[str, float] = {}
    for name, weight in _name_values(spec, "--task-weight", "name=weight") if spec else []:
        _check(0.0 < weight < float("inf"), f"--task-weight for {name!r} must be > 0 and finite, got {weight}")
        out[name] = weight
    return out


def _paths(value: str | list | tuple | None) -> tuple[str, ...]:
    """Comma-separated directories (CLI) or a list (JSON) -> tuple of non-empty strings."""
    if value is None:
        return ()
    parts = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(p).strip() for p in parts if str(p).strip())


def _ints(value: str | list | tuple | None) -> tuple[int, ...]:
    """Comma-separated integers (CLI) or a list (JSON) -> tuple of ints."""
    try:
        return tuple(int(p) for p in _paths(value))
    except ValueError:
        raise TrainConfigError(f"expected comma-separated integers, got {value!r}") from None


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


@dataclass
class TrainConfig:
    """Supervised fine-tuning of `AutoUIModel` on AITW-schema TFRecords (see docs/train.md)."""

    data: tuple[str, ...] = field(default=(), metadata=_help("training data dirs (AITW-schema TFRecord shards), comma-separated", parse=_paths))
    out: str = field(default="", metadata=_help("run directory (checkpoints, metrics.jsonl, final/)"))
    preset: str = field(default="default", metadata=_help("model preset name (models/NAME.json) or path to a config JSON"))
    init: str | None = field(default=None, metadata=_help("start from this saved model dir instead of random weights"))
    tokenizer: str | None = field(default=None, metadata=_help("tokenizer dir (default: --init's, else the shipped models/tokenizer)"))
    resume: str | None = field(default=None, metadata=_help("continue the run in this RUN_DIR from its latest checkpoint"))
    split_file: str | None = field(default=None, metadata=_help("episode split JSON(s), comma-separated (label -> episode ids), to filter --data"))
    split: str = field(default="train", metadata=_help("label in --split-file to train on"))
    steps: int = field(default=1000, metadata=_help("optimizer steps (the lr schedule spans them)"))
    stop_after: int = field(default=0, metadata=_help(
        "end this job after N steps with a checkpoint, to --resume later (time-limited jobs; 0: run to --steps)"))
    batch_size: int = field(default=4, metadata=_help("samples per micro-batch per process"))
    grad_accum: int = field(default=1, metadata=_help("micro-batches per optimizer step"))
    lr: float = field(default=1e-4, metadata=_help("peak learning rate"))
    min_lr_ratio: float = field(default=0.0, metadata=_help("final lr as a fraction of --lr (cosine floor)"))
    warmup: int = field(default=100, metadata=_help("linear warmup steps"))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay"))
    max_grad_norm: float = field(default=1.0, metadata=_help("gradient clipping norm (0 disables)"))
    fmt: str = field(default="compact", metadata=_help(f"action text format, one of {FORMATS}"))
    with_plan: bool = field(default=True, metadata=_help("targets include the chain-of-action plan"))
    history: int = field(default=8, metadata=_help("previous actions in the prompt"))
    plan: int = field(default=4, metadata=_help("action types in the plan (current + future)"))
    sample: dict[str, float] = field(default_factory=dict, metadata=_help(
        "keep only a fraction of some datasets' episodes, e.g. google_apps=0.1", parse=parse_sample_spec))
    task_weight: dict[str, float] = field(default_factory=dict, metadata=_help(
        "read each episode of a task (or dataset) this many times per epoch, e.g. click-tab-2=2,click-test=0.5 "
        "(fractions drawn anew each epoch)", parse=parse_weight_spec))
    augment_shift: float = field(default=0.0, metadata=_help(
        "translate each screenshot (and its taps) by up to this fraction of the screen, so taps must be grounded in pixels"))
    augment_text: float = field(default=0.0, metadata=_help(
        "probability of replacing each typed text that the goal quotes by random text of the same shape"))
    augment_read: float = field(default=0.0, metadata=_help(
        "probability of replacing a sample by a reading drill: 'Click on the text \"X\".' for a short text on its screen"))
    augment_history: float = field(default=0.0, metadata=_help(
        "probability of keeping only the last k previous actions (k from 1 to len-1), so progress is read from the screen"))
    box_text_weight: float = field(default=0.0, metadata=_help(
        "weight of the box-text loss (the image tokens under each annotated text box must name its words; 0: off)"))
    box_text_boxes: int = field(default=6, metadata=_help("annotated text boxes per sample for the box-text loss"))
    box_text_split: str = field(default="box", metadata=_help(
        "what one box-text row pools: 'box' (a whole text box vs all its tokens) or 'column' (each column of "
        "patches of a box vs the tokens whose characters fall in it)"))
    grounding_weight: float = field(default=0.0, metadata=_help(
        "weight of the grounding loss (a head per --grounding-layers learns to attend to the tapped patch; 0: off)"))
    grounding_layers: tuple[int, ...] = field(default=(1, 2), metadata=_help(
        "decoder layers whose head 0 the grounding loss supervises, comma-separated", parse=_ints))
    grounding_readout: bool = field(default=False, metadata=_help(
        "the grounding loss also asks those heads' outputs to carry the target's row and column"))
    goal_word_weight: float = field(default=0.0, metadata=_help(
        "weight of the goal-word loss (where the goal names the tapped text, a head per --goal-word-layers "
        "attends from those goal tokens to the text's box; 0: off)"))
    goal_word_layers: tuple[int, ...] = field(default=(0,), metadata=_help(
        "decoder layers whose head --goal-word-head the goal-word loss supervises, comma-separated", parse=_ints))
    goal_word_head: int = field(default=1, metadata=_help("the attention head the goal-word loss supervises"))
    word_pages_weight: float = field(default=0.0, metadata=_help(
        "weight of the word-pages loss (synthetic pages of words are encoded each step and a training-only head "
        "on the token under each word must name it; 0: off)"))
    word_pages: int = field(default=4, metadata=_help("word pages rendered per micro-batch for the word-pages loss"))
    word_pages_lr_scale: float = field(default=10.0, metadata=_help(
        "the word-pages head's learning rate as a multiple of --lr (it starts from nothing; the model does not)"))
    word_pages_vocab: str = field(default="miniwob", metadata=_help(
        "the word-pages vocabulary: 'miniwob' (MiniWoB's 169 lorem words) or a file with one word per line"))
    word_pages_target: str = field(default="words", metadata=_help(
        "what the token under a drawn word must give: 'words' (a training-only head names the word) or 'pieces' "
        "(the token under each of its word pieces must be nearest to that piece's input embedding)"))
    shuffle_buffer: int = field(default=2000, metadata=_help("samples held in the streaming shuffle buffer"))
    workers: int = field(default=0, metadata=_help("DataLoader workers decoding shards in parallel (per process)"))
    val_data: tuple[str, ...] = field(default=(), metadata=_help("validation data dirs, comma-separated", parse=_paths))
    val_split_file: str | None = field(default=None, metadata=_help("split JSON(s) for --val-data, comma-separated"))
    val_split: str = field(default="validation", metadata=_help("label in --val-split-file"))
    val_max_steps: int = field(default=256, metadata=_help("validation steps (screens) decoded per evaluation"))
    val_every: int = field(default=0, metadata=_help("validate every N steps (0: only at the end, if --val-data)"))
    val_batch_size: int = field(default=8, metadata=_help("batch size of validation decoding"))
    max_new_tokens: int = field(default=0, metadata=_help("validation decoding limit (0: by format, 32 compact / 96 autoui)"))
    save_every: int = field(default=0, metadata=_help("checkpoint every N steps (0: only the final model)"))
    keep_checkpoints: int = field(default=2, metadata=_help("how many step checkpoints to keep (oldest deleted)"))
    freeze_vision: bool = field(default=False, metadata=_help("do not train the vision tower"))
    cache_vision_features: bool = field(default=False, metadata=_help("compute each screenshot's vision features once (needs --freeze-vision)"))
    feature_cache_dir: str | None = field(default=None, metadata=_help("also keep cached features on disk here"))
    feature_cache_items: int = field(default=20000, metadata=_help("screenshots kept in the in-memory feature cache"))
    precision: str = field(default="auto", metadata=_help(f"one of {PRECISIONS}; auto: bf16 on GPU, fp32 on CPU"))
    seed: int = field(default=0, metadata=_help("seed for weights, shuffling and dropout"))
    log_every: int = field(default=1, metadata=_help("write metrics.jsonl every N steps"))

    def __post_init__(self) -> None:
        self.data = _paths(self.data)
        self.val_data = _paths(self.val_data)
        self.sample = parse_sample_spec(self.sample)
        self.task_weight = parse_weight_spec(self.task_weight)
        self.grounding_layers = _ints(self.grounding_layers)
        self.goal_word_layers = _ints(self.goal_word_layers)
        for name in ("steps", "batch_size", "grad_accum", "shuffle_buffer", "val_max_steps", "val_batch_size",
                     "log_every", "keep_checkpoints", "feature_cache_items"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value > 0, f"TrainConfig.{name} must be a positive int, got {value!r}")
        for name in ("warmup", "workers", "val_every", "save_every", "history", "seed", "stop_after", "max_new_tokens"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 0, f"TrainConfig.{name} must be an int >= 0, got {value!r}")
        _check(self.plan >= 1, f"TrainConfig.plan must be >= 1, got {self.plan}")
        _check(0.0 <= self.augment_shift < 0.5, f"TrainConfig.augment_shift must be in [0, 0.5), got {self.augment_shift}")
        _check(0.0 <= self.augment_text <= 1.0, f"TrainConfig.augment_text must be in [0, 1], got {self.augment_text}")
        _check(self.box_text_weight >= 0, f"TrainConfig.box_text_weight must be >= 0, got {self.box_text_weight}")
        _check(self.box_text_split in ("box", "column"),
               f"TrainConfig.box_text_split must be 'box' or 'column', got {self.box_text_split!r}")
        _check(self.box_text_boxes >= 1, f"TrainConfig.box_text_boxes must be >= 1, got {self.box_text_boxes}")
        _check(0.0 <= self.augment_read <= 1.0, f"TrainConfig.augment_read must be in [0, 1], got {self.augment_read}")
        _check(0.0 <= self.augment_history <= 1.0, f"TrainConfig.augment_history must be in [0, 1], got {self.augment_history}")
        _check(self.grounding_weight >= 0, f"TrainConfig.grounding_weight must be >= 0, got {self.grounding_weight}")
        _check(not self.grounding_weight or bool(self.grounding_layers), "--grounding-layers is empty")
        _check(self.goal_word_weight >= 0, f"TrainConfig.goal_word_weight must be >= 0, got {self.goal_word_weight}")
        _check(not self.goal_word_weight or bool(self.goal_word_layers), "--goal-word-layers is empty")
        _check(self.word_pages_weight >= 0, f"TrainConfig.word_pages_weight must be >= 0, got {self.word_pages_weight}")
        _check(self.word_pages >= 1, f"TrainConfig.word_pages must be >= 1, got {self.word_pages}")
        _check(self.word_pages_target in WORD_PAGE_TARGETS,
               f"TrainConfig.word_pages_target must be one of {WORD_PAGE_TARGETS}, got {self.word_pages_target!r}")
        _check(self.word_pages_lr_scale > 0, f"TrainConfig.word_pages_lr_scale must be > 0, got {self.word_pages_lr_scale}")
        _check(self.lr > 0, f"TrainConfig.lr must be > 0, got {self.lr}")
        _check(0.0 <= self.min_lr_ratio <= 1.0, f"TrainConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        _check(self.weight_decay >= 0 and self.max_grad_norm >= 0, "weight_decay and max_grad_norm must be >= 0")
        _check(self.fmt in FORMATS, f"TrainConfig.fmt must be one of {FORMATS}, got {self.fmt!r}")
        _check(self.precision in PRECISIONS, f"TrainConfig.precision must be one of {PRECISIONS}, got {self.precision!r}")
        _check(not self.cache_vision_features or self.freeze_vision,
               "--cache-vision-features needs --freeze-vision (features of a tower being trained go stale)")
        if self.resume is None:
            _check(bool(self.data), "--data is required (AITW-schema TFRecord dirs, comma-separated)")
            _check(bool(self.out), "--out is required (the run directory)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict of every field."""
        d = dataclasses.asdict(self)
        d["data"], d["val_data"] = list(self.data), list(self.val_data)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Inverse of `to_dict`; unknown keys are an error (a typo must not be silently ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        _check(not unknown, f"TrainConfig: unknown keys {unknown}")
        return cls(**data)

    def save(self, run_dir: str | Path) -> Path:
        """Write `RUN_DIR/train_config.json`."""
        path = Path(run_dir) / CONFIG_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, run_dir: str | Path) -> "TrainConfig":
        """Read `RUN_DIR/train_config.json`."""
        path = Path(run_dir) / CONFIG_FILE
        if not path.is_file():
            raise TrainConfigError(f"{path} not found: is {run_dir} a training run directory?")
        return cls.from_dict(json.loads(path.read_text()))


def _base_type(tp: Any) -> Any:
    """`int | None` -> int; `tuple[str, ...]` -> tuple; plain types unchanged."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    return origin or tp


def _arg_type(conv: Any) -> Any:
    """Wrap a parse function so argparse shows its message instead of a generic 'invalid value'."""
    def parse(text: str) -> Any:
        try:
            return conv(text)
        except TrainConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = getattr(conv, "__name__", "value")
    return parse


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one `--flag` per dataclass field; defaults are SUPPRESSed so explicit flags can be told apart."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        base = _base_type(hints[f.name])
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        shown = "" if default in (None, "", (), {}) else f" (default: {default})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS,
                                  "help": f.metadata.get("help", "") + shown}
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        conv = f.metadata.get("parse")
        kwargs["type"] = _arg_type(conv) if conv is not None else (base if base in (int, float, str) else str)
        kwargs["metavar"] = f.name.upper()
        parser.add_argument(flag, **kwargs)


def explicit_args(ns: argparse.Namespace) -> dict[str, Any]:
    """The fields set on the command line (defaults were suppressed by `add_dataclass_arguments`)."""
    return dict(vars(ns))


def config_from_args(ns: argparse.Namespace) -> TrainConfig:
    """Build the config for a new run or a resumed one.

    With `--resume RUN_DIR` the saved config is the base and only flags given explicitly
    override it (e.g. a larger `--steps` to train further).
    """
    given = explicit_args(ns)
    resume = given.get("resume")
    if not resume:
        return TrainConfig(**given)
    base = TrainConfig.load(resume).to_dict()
    base["stop_after"] = 0  # a job limit of the interrupted job, not of the run
    base.update(given)
    base["out"] = str(resume)
    return TrainConfig.from_dict(base)
