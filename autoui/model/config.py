"""Model configuration: validated dataclasses for the vision tower, the decoder and the joined model.

A `ModelConfig` is everything needed to build `AutoUIModel` and to preprocess its inputs
(image size, mean, std, special token ids). It is saved as `config.json` next to the
weights and round-trips through JSON exactly. Presets live as JSON files in the repo's
`models/` folder; `load_preset("tiny")` reads `models/tiny.json`.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRESETS_DIR = Path(__file__).resolve().parents[2] / "models"
"""Where named presets live (the repo's `models/` folder; present in a source checkout)."""

VISION_VARIANTS = ("siglip", "clip")
VISION_ACTS = ("gelu_pytorch_tanh", "quick_gelu", "gelu")
FEATURE_SELECT = ("full", "default")


class ConfigError(ValueError):
    """A configuration that cannot describe a working model (the message says which field and why)."""


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        _require(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                 f"{type(obj).__name__}.{name} must be a positive int, got {value!r}")


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build dataclass `cls` from `data`, refusing unknown keys (typos must not be silently ignored)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} expects a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    _require(not unknown, f"{cls.__name__}: unknown keys {unknown}; known keys are {sorted(known)}")
    try:
        return cls(**data)
    except TypeError as exc:  # e.g. a list where a number belongs
        raise ConfigError(f"{cls.__name__}: {exc}") from exc


@dataclass(frozen=True)
class VisionConfig:
    """A ViT laid out like HF `SiglipVisionModel` (variant "siglip") or `CLIPVisionModel` ("clip").

    CLIP adds a class token, a pre-encoder LayerNorm (`pre_layrnorm`) and has no patch bias.
    """

    variant: str = "siglip"
    image_size: int = 224
    patch_size: int = 16
    hidden_size: int = 256
    num_layers: int = 6
    num_heads: int = 4
    intermediate_size: int = 1024
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu_pytorch_tanh"
    num_channels: int = 3

    def __post_init__(self) -> None:
        _require(self.variant in VISION_VARIANTS, f"VisionConfig.variant must be one of {VISION_VARIANTS}, got {self.variant!r}")
        _require(self.hidden_act in VISION_ACTS, f"VisionConfig.hidden_act must be one of {VISION_ACTS}, got {self.hidden_act!r}")
        _positive(self, "image_size", "patch_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "num_channels")
        _require(self.image_size % self.patch_size == 0,
                 f"VisionConfig.image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        _require(self.hidden_size % self.num_heads == 0,
                 f"VisionConfig.num_heads {self.num_heads} must divide hidden_size {self.hidden_size}")
        _require(self.layer_norm_eps > 0, f"VisionConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps}")

    @property
    def num_patches(self) -> int:
        """Patches per image: (image_size / patch_size)^2."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_positions(self) -> int:
        """Position embeddings: one per patch, plus the class token for CLIP."""
        return self.num_patches + (1 if self.variant == "clip" else 0)


@dataclass(frozen=True)
class DecoderConfig:
    """A Llama/Qwen2-style decoder: RMSNorm, RoPE, grouped-query attention, SwiGLU.

    `qkv_bias=True` is Qwen2's layout (bias on q/k/v, none on o); `head_dim=None` means
    hidden_size // num_heads.
    """

    vocab_size: int = 2048
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 6
    num_kv_heads: int = 2
    intermediate_size: int = 1024
    head_dim: int | None = None
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048
    qkv_bias: bool = False
    tie_word_embeddings: bool = True

    def __post_init__(self) -> None:
        _positive(self, "vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads",
                  "intermediate_size", "max_position_embeddings")
        _require(self.num_heads % self.num_kv_heads == 0,
                 f"DecoderConfig.num_kv_heads {self.num_kv_heads} must divide num_heads {self.num_heads}")
        if self.head_dim is None:
            _require(self.hidden_size % self.num_heads == 0,
                     f"DecoderConfig.num_heads {self.num_heads} must divide hidden_size {self.hidden_size} (or set head_dim)")
        else:
            _positive(self, "head_dim")
        _require(self.resolved_head_dim % 2 == 0, f"DecoderConfig head_dim must be even for RoPE, got {self.resolved_head_dim}")
        _require(self.rms_norm_eps > 0, f"DecoderConfig.rms_norm_eps must be > 0, got {self.rms_norm_eps}")
        _require(self.rope_theta > 0, f"DecoderConfig.rope_theta must be > 0, got {self.rope_theta}")

    @property
    def resolved_head_dim(self) -> int:
        """The attention head size actually used."""
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_heads


@dataclass(frozen=True)
class ModelConfig:
    """The joined model (LLaVA layout) plus what preprocessing and prompting need.

    `feature_layer` picks the vision hidden state fed to the projector like HF Llava's
    `vision_feature_layer` (-1: the last encoder layer's output, before `post_layernorm`);
    `feature_select` is `vision_feature_select_strategy` ("full" keeps every token,
    "default" drops CLIP's class token).
    """

    vision: VisionConfig = field(default_factory=VisionConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    image_token_id: int = 4
    pad_token_id: int = 0
    bos_token_id: int | None = 1
    eos_token_id: int = 2
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    feature_layer: int = -1
    feature_select: str = "full"
    preset: str = "custom"

    def __post_init__(self) -> None:
        # JSON gives dicts and lists: normalise them so equality and hashing behave
        if isinstance(self.vision, dict):
            object.__setattr__(self, "vision", _from_dict(VisionConfig, self.vision))
        if isinstance(self.decoder, dict):
            object.__setattr__(self, "decoder", _from_dict(DecoderConfig, self.decoder))
        _require(isinstance(self.vision, VisionConfig), "ModelConfig.vision must be a VisionConfig")
        _require(isinstance(self.decoder, DecoderConfig), "ModelConfig.decoder must be a DecoderConfig")
        for name in ("image_mean", "image_std"):
            value = tuple(float(v) for v in getattr(self, name))
            _require(len(value) == self.vision.num_channels, f"ModelConfig.{name} needs {self.vision.num_channels} values, got {value}")
            object.__setattr__(self, name, value)
        _require(all(s > 0 for s in self.image_std), f"ModelConfig.image_std must be > 0, got {self.image_std}")
        self._validate_ids()
        _require(self.feature_select in FEATURE_SELECT, f"ModelConfig.feature_select must be one of {FEATURE_SELECT}, got {self.feature_select!r}")
        _require(self.feature_select == "full" or self.vision.variant == "clip",
                 'ModelConfig.feature_select "default" drops a class token: only the clip variant has one')
        layers = self.vision.num_layers
        # HF indexes hidden states 0..L (0 = embeddings), negatives counting from the end
        _require(isinstance(self.feature_layer, int) and -layers - 1 <= self.feature_layer <= layers,
                 f"ModelConfig.feature_layer must index the {layers + 1} vision hidden states, got {self.feature_layer}")
        _require(isinstance(self.preset, str) and self.preset != "", "ModelConfig.preset must be a non-empty string")

    def _validate_ids(self) -> None:
        vocab = self.decoder.vocab_size
        named = {"image_token_id": self.image_token_id, "pad_token_id": self.pad_token_id, "eos_token_id": self.eos_token_id}
        if self.bos_token_id is not None:
            named["bos_token_id"] = self.bos_token_id
        for name, value in named.items():
            _require(isinstance(value, int) and 0 <= value < vocab,
                     f"ModelConfig.{name} must be an id in 0..{vocab - 1} (decoder.vocab_size), got {value!r}")
        others = {k: v for k, v in named.items() if k != "image_token_id"}
        clash = [k for k, v in others.items() if v == self.image_token_id]
        _require(not clash, f"ModelConfig.image_token_id {self.image_token_id} must differ from {clash}")

    @property
    def image_size(self) -> int:
        """Square side, in pixels, that screenshots are resized/padded to."""
        return self.vision.image_size

    @property
    def num_vision_layers_used(self) -> int:
        """How many encoder layers run to produce the selected hidden state (later ones are skipped)."""
        n = self.vision.num_layers
        return self.feature_layer if self.feature_layer >= 0 else n + 1 + self.feature_layer

    @property
    def num_image_tokens(self) -> int:
        """How many image placeholder tokens one screenshot takes in the prompt."""
        drop_cls = self.vision.variant == "clip" and self.feature_select == "default"
        return self.vision.num_positions - (1 if drop_cls else 0)

    def with_tokenizer(self, tokenizer: Any) -> "ModelConfig":
        """A copy using `tokenizer`'s vocabulary size and special ids.

        `tokenizer` needs `vocab_size`, `pad_id`, `bos_id`, `eos_id`, `image_token_id`
        (as `autoui.model.tokenizer.ActionTokenizer` has).
        """
        decoder = dataclasses.replace(self.decoder, vocab_size=int(tokenizer.vocab_size))
        return dataclasses.replace(self, decoder=decoder, image_token_id=tokenizer.image_token_id,
                                   pad_token_id=tokenizer.pad_id, bos_token_id=tokenizer.bos_id,
                                   eos_token_id=tokenizer.eos_id)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (nested dicts for the sub-configs)."""
        data = dataclasses.asdict(self)
        data["image_mean"], data["image_std"] = list(self.image_mean), list(self.image_std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Inverse of `to_dict`; unknown keys raise `ConfigError`."""
        return _from_dict(cls, data)

    def to_json(self) -> str:
        """Pretty JSON text of `to_dict()`."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        """Parse JSON text written by `to_json` (or a hand-written preset)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"model config is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        """Write `to_json()` to `path`; returns the path."""
        path = Path(path)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        """Read a config JSON file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no model config file at {path}")
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc


def list_presets() -> list[str]:
    """Names of the presets shipped in `models/`."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.json")) if PRESETS_DIR.is_dir() else []


def load_preset(name_or_path: str | Path) -> ModelConfig:
    """A preset by name (`"tiny"` reads `models/tiny.json`) or a path to a config JSON file."""
    path = Path(name_or_path)
    if path.suffix == ".json" or path.is_file():
        return ModelConfig.load(path)
    candidate = PRESETS_DIR / f"{name_or_path}.json"
    if not candidate.is_file():
        raise ConfigError(f"unknown model preset {str(name_or_path)!r}; known presets: {list_presets()} (or pass a .json path)")
    return ModelConfig.load(candidate)
