"""AITW's record schema: the `Step`/`Episode` types and their tf.train.Example codec.

One TFRecord record is one step (see /work/shared/docs/aitw.md for the field table).
Examples are (de)serialised with the `tf.train.Example` protobuf shipped in the
`tfrecord` PyPI package (it works with the installed protobuf 7). That package's
`__init__` imports torch (about a second), so its `example_pb2` module is loaded on its
own, under its usual name, so that a later `import tfrecord` reuses it.
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from autoui.actions import Action, ActionError

_CHANNELS = (1, 3, 4)


class RecordDecodeError(ValueError):
    """A record whose bytes are not a valid AITW step (missing field, wrong image size...)."""


def example_pb2() -> ModuleType:
    """The `tf.train.Example` protobuf module, loaded without running `tfrecord/__init__` (torch)."""
    name = "tfrecord.example_pb2"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("tfrecord")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the 'tfrecord' package is needed for AITW records: pip install tfrecord")
    location = Path(list(spec.submodule_search_locations)[0]) / "example_pb2.py"
    mod_spec = importlib.util.spec_from_file_location(name, location)
    module = importlib.util.module_from_spec(mod_spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    try:
        mod_spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception:
        del sys.modules[name]
        raise
    return module


@dataclass
class Step:
    """One AITW step: the screen before the action, the action, and the screen's annotations."""

    episode_id: str
    step_id: int
    episode_length: int
    goal: str
    image: np.ndarray = field(repr=False)  # uint8 [H, W, 3]; read-only view of the record's bytes when decoded
    action: Action
    # float32 [N, 4] (y, x, height, width), normalized
    ui_positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    ui_text: list[str] = field(default_factory=list)
    ui_types: list[str] = field(default_factory=list)
    android_api_level: int = 0
    device_type: str = ""
    current_activity: str = ""
    dataset: str = ""  # the name of the folder holding the shard

    def __post_init__(self) -> None:
        img = self.image
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"Step.image must be uint8 [H, W, 3], got {getattr(img, 'dtype', type(img))} "
                             f"{getattr(img, 'shape', '')}")
        pos = np.asarray(self.ui_positions, dtype=np.float32)
        if pos.ndim != 2 or pos.shape[1] != 4:
            raise ValueError(f"Step.ui_positions must be [N, 4], got shape {pos.shape}")
        self.ui_positions = pos
        if not (len(self.ui_text) == len(self.ui_types) == len(pos)):
            raise ValueError(f"ui_text ({len(self.ui_text)}), ui_types ({len(self.ui_types)}) and "
                             f"ui_positions ({len(pos)}) must have one entry per box")
        if not isinstance(self.action, Action):
            raise ValueError(f"Step.action must be an autoui.actions.Action, got {type(self.action).__name__}")


@dataclass
class Episode:
    """The steps of one episode, ordered by step_id."""

    episode_id: str
    goal: str
    dataset: str
    steps: list[Step]

    def __len__(self) -> int:
        return len(self.steps)


# -- decoding ------------------------------------------------------------------------

def _get(features, key: str, kind: str, required: bool):
    if key not in features:
        if required:
            raise RecordDecodeError(f"missing field {key!r}")
        return None
    values = getattr(features[key], kind).value
    if required and len(values) == 0:
        raise RecordDecodeError(f"field {key!r} is empty")
    return values


def _one(features, key: str, kind: str, default=None):
    values = _get(features, key, kind, required=default is None)
    return values[0] if values else default


def _str(raw: bytes, key: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordDecodeError(f"field {key!r} is not UTF-8 ({exc})") from None


def _image(features) -> np.ndarray:
    raw = _one(features, "image/encoded", "bytes_list")
    h = int(_one(features, "image/height", "int64_list"))
    w = int(_one(features, "image/width", "int64_list"))
    c = int(_one(features, "image/channels", "int64_list", 3))
    if h <= 0 or w <= 0 or c not in _CHANNELS:
        raise RecordDecodeError(f"bad image shape ({h}, {w}, {c})")
    if len(raw) != h * w * c:
        raise RecordDecodeError(f"image/encoded has {len(raw)} bytes, expected {h}*{w}*{c}={h * w * c} (raw pixels)")
    img = np.frombuffer(raw, dtype=np.uint8).reshape(h, w, c)  # no copy
    if c == 4:
        return img[:, :, :3]  # a view that drops alpha
    if c == 1:
        return np.repeat(img, 3, axis=2)
    return img


def _annotations(features) -> tuple[np.ndarray, list[str], list[str]]:
    flat = _get(features, "image/ui_annotations_positions", "float_list", required=False)
    pos = np.asarray(flat if flat is not None else [], dtype=np.float32)
    if pos.size % 4:
        raise RecordDecodeError(f"ui_annotations_positions has {pos.size} values, not a multiple of 4")
    pos = pos.reshape(-1, 4)
    texts = [t.decode("utf-8", "replace") for t in
             (_get(features, "image/ui_annotations_text", "bytes_list", False) or [])]
    types = [t.decode("utf-8", "replace") for t in
             (_get(features, "image/ui_annotations_ui_types", "bytes_list", False) or [])]
    # Some producers leave text/types out; a length mismatch with boxes present is corruption.
    texts = texts or [""] * len(pos)
    types = types or [""] * len(pos)
    if not (len(texts) == len(types) == len(pos)):
        raise RecordDecodeError(f"{len(pos)} boxes but {len(texts)} texts and {len(types)} types")
    return pos, texts, types


def _action(features) -> Action:
    code = int(_one(features, "results/action_type", "int64_list"))
    touch = _get(features, "results/yx_touch", "float_list", False) or (-1.0, -1.0)
    lift = _get(features, "results/yx_lift", "float_list", False) or (-1.0, -1.0)
    text = _str(_one(features, "results/type_action", "bytes_list", b""), "results/type_action")
    if len(touch) != 2 or len(lift) != 2:
        raise RecordDecodeError(f"yx_touch/yx_lift must hold 2 values, got {len(touch)} and {len(lift)}")
    try:
        return Action.from_aitw(code, tuple(touch), tuple(lift), text)
    except ActionError as exc:
        raise RecordDecodeError(f"invalid action ({exc})") from None


def decode_step(record: bytes, dataset: str = "") -> Step:
    """Decode one serialized tf.train.Example into a Step (raises RecordDecodeError)."""
    pb2 = example_pb2()
    try:
        features = pb2.Example.FromString(record).features.feature
    except Exception as exc:  # protobuf's DecodeError; the record's bytes are not an Example
        raise RecordDecodeError(f"not a tf.train.Example ({type(exc).__name__}: {exc})") from None
    pos, texts, types = _annotations(features)
    return Step(
        episode_id=_str(_one(features, "episode_id", "bytes_list"), "episode_id"),
        step_id=int(_one(features, "step_id", "int64_list")),
        episode_length=int(_one(features, "episode_length", "int64_list")),
        goal=_str(_one(features, "goal_info", "bytes_list"), "goal_info"),
        image=_image(features),
        action=_action(features),
        ui_positions=pos,
        ui_text=texts,
        ui_types=types,
        android_api_level=int(_one(features, "android_api_level", "int64_list", 0)),
        device_type=_str(_one(features, "device_type", "bytes_list", b""), "device_type"),
        current_activity=_str(_one(features, "current_activity", "bytes_list", b""), "current_activity"),
        dataset=dataset,
    )


# -- encoding ------------------------------------------------------------------------

def step_to_example(step: Step):
    """The tf.train.Example message of a step (mutable: tests use it to craft odd records)."""
    ex = example_pb2().Example()
    f = ex.features.feature
    img = np.ascontiguousarray(step.image)
    a = step.action
    for key, value in (("episode_id", step.episode_id), ("goal_info", step.goal), ("device_type", step.device_type),
                       ("current_activity", step.current_activity), ("results/type_action", a.typed_text)):
        f[key].bytes_list.value.append(value.encode("utf-8"))
    f["image/encoded"].bytes_list.value.append(img.tobytes())
    for key, value in (("step_id", step.step_id), ("episode_length", step.episode_length),
                       ("android_api_level", step.android_api_level), ("image/height", img.shape[0]),
                       ("image/width", img.shape[1]), ("image/channels", img.shape[2]),
                       ("results/action_type", int(a.action_type))):
        f[key].int64_list.value.append(int(value))
    f["results/yx_touch"].float_list.value.extend(a.touch_yx)
    f["results/yx_lift"].float_list.value.extend(a.lift_yx)
    f["image/ui_annotations_positions"].float_list.value.extend(step.ui_positions.reshape(-1).tolist())
    f["image/ui_annotations_text"].bytes_list.value.extend(t.encode("utf-8") for t in step.ui_text)
    f["image/ui_annotations_ui_types"].bytes_list.value.extend(t.encode("utf-8") for t in step.ui_types)
    return ex


def encode_step(step: Step) -> bytes:
    """Serialize a step to tf.train.Example bytes (the inverse of `decode_step`)."""
    # deterministic=True sorts the feature map; otherwise its order (and the bytes) vary per process
    return step_to_example(step).SerializeToString(deterministic=True)
