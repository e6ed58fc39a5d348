"""Weight I/O: our own checkpoints, and pretrained towers from local HF checkpoints.

- `save_model` / `load_model` (behind `AutoUIModel.save_pretrained/from_pretrained`):
  `config.json` + `model.safetensors`; loading builds the model on the `meta` device and
  assigns the stored tensors (no random init, no second copy in memory).
- `load_vision_from_hf` / `load_decoder_from_hf`: copy a SigLIP/CLIP vision tower or a
  Llama/Qwen2 decoder out of a local HF checkpoint directory (safetensors, single file or
  sharded with `model.safetensors.index.json`). The tower is found by its anchor parameter
  name, so `SiglipVisionModel`, `SiglipModel`, `CLIPModel`, `LlamaForCausalLM`,
  `Qwen2Model` and Llava checkpoints all work. Mismatches raise `WeightsError` naming every
  missing, unexpected and mis-shaped tensor.
- `model_from_hf`: the usual way to start a GPU-sized preset from two pretrained checkpoints.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from autoui.model.config import ModelConfig
from autoui.model.layers import init_weights
from autoui.model.vlm import AutoUIModel

log = logging.getLogger("autoui.model.weights")

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# HF checkpoint tensors we knowingly skip: buffers older transformers saved, SigLIP's pooling head
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq", "embeddings.position_ids")
_IGNORED_PARTS = ("head.",)
# config fields that may differ from the checkpoint's: checked by tensor shapes or free to choose
_NOT_ARCHITECTURE = ("vocab_size", "max_position_embeddings")


class WeightsError(ValueError):
    """A checkpoint that does not fit the model (the message lists the offending tensors)."""


def save_model(model: AutoUIModel, directory: str | Path, tokenizer: Any = None) -> Path:
    """Write `config.json` and `model.safetensors` to `directory` (and the tokenizer's files if given)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save(directory / CONFIG_FILE)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save(directory)
    log.info("saved %s model (%d params) to %s", model.config.preset, model.num_parameters(), directory)
    return directory


def save_derived(model: AutoUIModel, source: str | Path, directory: str | Path, sidecars: Iterable[str] = ()) -> Path:
    """Save `model`, made from the model directory `source`, to `directory` with `source`'s tokenizer.

    Each file named in `sidecars` that `source` has is copied along (e.g. `screen.json`, the screens
    the model learned on, and `train_config.json`, its recipe).
    """
    from autoui.model.tokenizer import ActionTokenizer

    source = Path(source)
    directory = save_model(model, directory, tokenizer=ActionTokenizer.load(source))
    for name in sidecars:
        if (source / name).is_file():
            shutil.copy(source / name, directory / name)
    return directory


def load_model(directory: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None) -> AutoUIModel:
    """Read a directory written by `save_model`; tensors go straight to `device` (cast to `dtype` if given)."""
    directory = Path(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise WeightsError(f"no {WEIGHTS_FILE} in {directory}")
    config = ModelConfig.load(directory / CONFIG_FILE)
    with torch.device("meta"):
        model = AutoUIModel(config)
    state = load_file(str(weights), device=str(device))
    load_module(model, state, source=str(weights), dtype=dtype)
    return model.eval()


def check_state(expected: dict[str, torch.Size], found: dict[str, Any], source: str) -> None:
    """Raise `WeightsError` listing missing / unexpected names and shape mismatches (expected vs found)."""
    shapes = {k: tuple(v) for k, v in found.items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = [f"{k}: expected {tuple(expected[k])}, found {shapes[k]}" for k in sorted(set(expected) & set(shapes))
             if tuple(expected[k]) != shapes[k]]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {missing}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {unexpected}")
    if wrong:
        problems.append(f"shape mismatch {len(wrong)}: {wrong}")
    if problems:
        raise WeightsError(f"{source} does not fit the model: " + "; ".join(problems))


def load_module(module: nn.Module, state: dict[str, torch.Tensor], source: str,
                dtype: torch.dtype | None = None) -> None:
    """Load `state` into `module` after `check_state`; assigns tensors when the module is on `meta`."""
    check_state({k: v.shape for k, v in module.state_dict().items()}, {k: v.shape for k, v in state.items()}, source)
    on_meta = any(p.is_meta for p in module.parameters())
    if dtype is None and not on_meta:
        dtype = next(module.parameters()).dtype
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    module.load_state_dict(state, strict=True, assign=on_meta)


# ---- local HF checkpoints ------------------------------------------------------------------

def checkpoint_index(local_dir: str | Path) -> dict[str, Path]:
    """Tensor name -> safetensors file for a local HF checkpoint (single file or sharded)."""
    local_dir = Path(local_dir)
    index = local_dir / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
        if not isinstance(weight_map, dict):
            raise WeightsError(f"{index} has no weight_map")
        return {name: local_dir / fname for name, fname in weight_map.items()}
    files = sorted(local_dir.glob("*.safetensors"))
    if not files:
        raise WeightsError(f"no safetensors checkpoint in {local_dir} (only safetensors files are read)")
    names: dict[str, Path] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            names.update({k: f for k in fh.keys()})
    return names


def _shapes(index: dict[str, Path], names: Iterable[str]) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    by_file: dict[Path, list[str]] = {}
    for n in names:
        by_file.setdefault(index[n], []).append(n)
    for f, group in by_file.items():
        with safe_open(str(f), framework="pt") as fh:
            out.update({n: tuple(fh.get_slice(n).get_shape()) for n in group})
    return out


def _read(index: dict[str, Path], names: Iterable[str], device: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    by_file: dict[Path, list[str]] = {}
    for n in names:
        by_file.setdefault(index[n], []).append(n)
    for f, group in by_file.items():
        with safe_open(str(f), framework="pt", device=device) as fh:
            out.update({n: fh.get_tensor(n) for n in group})
    return out


def _find_prefix(index: dict[str, Path], anchor: str, what: str, local_dir: Path) -> str:
    """The name prefix under which the tower with parameter `anchor` lives."""
    prefixes = sorted(n[: -len(anchor)] for n in index if n == anchor or n.endswith("." + anchor))
    if len(prefixes) != 1:
        raise WeightsError(f"expected one {what} in {local_dir} (a tensor named *{anchor}), found {len(prefixes)}: {prefixes}")
    return prefixes[0]


def _tower_names(index: dict[str, Path], prefix: str) -> list[str]:
    names = []
    for n in index:
        rest = n[len(prefix):]
        if n.startswith(prefix) and not rest.endswith(_IGNORED_SUFFIXES) and not rest.startswith(_IGNORED_PARTS):
            names.append(n)
    return names


def _check_hf_config(local_dir: Path, ours: Any, convert: Any) -> None:
    """Compare the checkpoint's config.json (converted by `convert`) with ours, field by field."""
    path = local_dir / CONFIG_FILE
    if not path.is_file():
        return
    theirs = convert(json.loads(path.read_text(encoding="utf-8")))
    diffs = [f"{f}: ours {getattr(ours, f)!r}, checkpoint {getattr(theirs, f)!r}"
             for f in ours.__dataclass_fields__ if f not in _NOT_ARCHITECTURE and getattr(ours, f) != getattr(theirs, f)]
    if diffs:
        raise WeightsError(f"{path} describes a different architecture: {diffs}")


def load_vision_from_hf(model: AutoUIModel, local_dir: str | Path, device: str = "cpu") -> None:
    """Load a SigLIP or CLIP vision tower from a local HF checkpoint into `model.vision`."""
    from autoui.model.hf_export import vision_config_from_hf

    local_dir = Path(local_dir)
    _check_hf_config(local_dir, model.config.vision, vision_config_from_hf)
    index = checkpoint_index(local_dir)
    prefix = _find_prefix(index, "embeddings.patch_embedding.weight", "vision tower", local_dir)
    names = _tower_names(index, prefix)
    check_state({k: v.shape for k, v in model.vision.state_dict().items()},
                {n[len(prefix):]: s for n, s in _shapes(index, names).items()}, f"vision tower in {local_dir}")
    state = {n[len(prefix):]: t for n, t in _read(index, names, device).items()}
    load_module(model.vision, state, source=str(local_dir))


def load_decoder_from_hf(model: AutoUIModel, local_dir: str | Path, device: str = "cpu",
                         grow_vocab: bool = False) -> None:
    """Load a Llama/Qwen2 decoder (and its lm_head when ours is untied) from a local HF checkpoint.

    `grow_vocab=True` lets our vocabulary be larger than the checkpoint's (extra tokens such
    as `<image>`): the extra rows start at the mean embedding.
    """
    from autoui.model.hf_export import decoder_config_from_hf

    local_dir = Path(local_dir)
    _check_hf_config(local_dir, model.config.decoder, decoder_config_from_hf)
    index = checkpoint_index(local_dir)
    prefix = _find_prefix(index, "embed_tokens.weight", "decoder", local_dir)
    head = [n for n in index if n == "lm_head.weight" or n.endswith(".lm_head.weight")]
    names = [n for n in _tower_names(index, prefix) if n not in head]
    state = {n[len(prefix):]: t for n, t in _read(index, names, device).items()}
    head_w = _read(index, head[:1], device)[head[0]] if head else None
    if model.lm_head is not None:
        if head_w is None:
            raise WeightsError(f"{local_dir} has no lm_head.weight but the model has an untied lm_head "
                               "(set decoder.tie_word_embeddings=true for tied checkpoints)")
        state["lm_head.weight"] = head_w
    elif head_w is not None and "embed_tokens.weight" in state and not torch.equal(head_w, state["embed_tokens.weight"]):
        raise WeightsError(f"{local_dir} has its own lm_head.weight but the model ties it to embed_tokens "
                           "(set decoder.tie_word_embeddings=false)")
    if grow_vocab:
        state = _grow_vocab(state, model.config.decoder.vocab_size)
    expected = {k: v.shape for k, v in model.decoder.state_dict().items()}
    if model.lm_head is not None:
        expected["lm_head.weight"] = model.lm_head.weight.shape
    source = f"decoder in {local_dir} (names under prefix {prefix!r})"
    check_state(expected, {k: v.shape for k, v in state.items()}, source)
    if model.lm_head is not None:
        load_module(model.lm_head, {"weight": state.pop("lm_head.weight")}, source=source)
    load_module(model.decoder, state, source=source)


def _grow_vocab(state: dict[str, torch.Tensor], vocab: int) -> dict[str, torch.Tensor]:
    for key in ("embed_tokens.weight", "lm_head.weight"):
        w = state.get(key)
        if w is not None and w.shape[0] < vocab:
            extra = w.float().mean(0, keepdim=True).expand(vocab - w.shape[0], -1).to(w.dtype)
            state[key] = torch.cat([w, extra], dim=0)
            log.info("grew %s from %d to %d rows", key, w.shape[0], vocab)
    return state


def model_from_hf(config: ModelConfig, vision_dir: str | Path | None, decoder_dir: str | Path | None,
                  device: str = "cpu", dtype: torch.dtype | None = None, grow_vocab: bool = False) -> AutoUIModel:
    """Build `config` on `meta`, load pretrained towers from local HF dirs, init the rest fresh.

    Parts without a checkpoint (the projector always, a tower whose dir is None) are
    materialised on `device` and initialised for training.
    """
    with torch.device("meta"):
        model = AutoUIModel(config)
    if vision_dir is not None:
        load_vision_from_hf(model, vision_dir, device=device)
    if decoder_dir is not None:
        load_decoder_from_hf(model, decoder_dir, device=device, grow_vocab=grow_vocab)
    for part in (model.vision, model.projector, model.decoder, model.lm_head):
        if part is not None and any(p.is_meta for p in part.parameters()):
            part.to_empty(device=device)
            init_weights(part)
    return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
