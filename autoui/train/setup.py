"""Build what a training run needs from its `TrainConfig`: tokenizer, model, optimizer, data.

Kept apart from the loop so each piece is testable and `train/sft.py` stays thin.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from autoui.data.splits import split_ids
from autoui.data.stream import AITWStream, resolve_shards
from autoui.model.config import load_preset
from autoui.model.prompt import PromptLimits, check_ids
from autoui.model.tokenizer import TOKENIZER_FILE, ActionTokenizer
from autoui.model.vlm import AutoUIModel
from autoui.train.augment import Augment
from autoui.train.config import TrainConfig
from autoui.train.examples import BatchCollator, ExampleBuilder
from autoui.train.predict import eval_pairs

log = logging.getLogger("autoui.train.setup")


def mixed_precision(cfg: TrainConfig) -> str | None:
    """Accelerate's mixed_precision: explicit choice, else the launcher's, else bf16 on CUDA / fp32 on CPU."""
    if cfg.precision != "auto":
        return cfg.precision
    if os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return None  # `accelerate launch --config_file ...` decided; Accelerator reads it
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def load_tokenizer(cfg: TrainConfig, model_dir: str | Path | None = None) -> ActionTokenizer:
    """--tokenizer, else the tokenizer saved with `model_dir` (--init / checkpoint), else the shipped one."""
    if cfg.tokenizer:
        return ActionTokenizer.load(cfg.tokenizer)
    if model_dir is not None and (Path(model_dir) / TOKENIZER_FILE).is_file():
        return ActionTokenizer.load(model_dir)
    return ActionTokenizer.load()


def build_model(cfg: TrainConfig, tokenizer: ActionTokenizer, model_dir: str | Path | None = None) -> AutoUIModel:
    """Load `model_dir` (checkpoint or --init) or build the preset with fresh weights (seeded by the caller).

    Weights are always float32 here, the training master copy: a shipped model saved in fp16
    (models/default-model) trained as fp16 would overflow to NaN within steps, and crawl on CPU.
    Mixed precision is the accelerator's autocast, not the parameters' dtype.
    """
    if model_dir is not None:
        model = AutoUIModel.from_pretrained(model_dir, dtype=torch.float32)
    else:
        model = AutoUIModel(load_preset(cfg.preset).with_tokenizer(tokenizer))
    check_ids(tokenizer, model.config)
    if cfg.freeze_vision:
        model.vision.requires_grad_(False)
    return model


def freeze_unused_parameters(model: AutoUIModel) -> list[str]:
    """Freeze parameters that no forward pass uses (e.g. vision layers past `feature_layer`); returns their names.

    DDP fails on a parameter that never receives a gradient; freezing them is exact (AdamW
    never updates a parameter without a gradient) and cheaper than `find_unused_parameters`.
    Found with one backward pass on a dummy one-sample batch (on the model's device: move it first).
    """
    cfg = model.config
    ids = [cfg.bos_token_id if cfg.bos_token_id is not None else cfg.pad_token_id]
    ids += [cfg.image_token_id] * cfg.num_image_tokens + [cfg.eos_token_id] * 2
    dev = model.device
    input_ids = torch.tensor([ids], device=dev)  # [1, T]
    labels = input_ids.clone()
    labels[:, :-2] = -100
    pixels = torch.zeros(1, 3, cfg.image_size, cfg.image_size, device=dev)  # [1, 3, S, S]
    _, loss = model(pixels, input_ids, labels=labels, return_logits=False)
    loss.backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    for name, p in model.named_parameters():
        p.grad = None
        if name in unused:
            p.requires_grad_(False)
    if unused:
        log.info("froze %d parameters that no forward pass uses: %s", len(unused), ", ".join(unused))
    return unused


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on vectors (norm scales, biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=(0.9, 0.999))


def episode_ids(split_files: str | None, label: str) -> frozenset[str] | None:
    """Ids of split `label` over one or more comma-separated split files (Auto-UI ships one per dataset)."""
    if not split_files:
        return None
    ids: set[str] = set()
    for path in split_files.split(","):
        ids |= split_ids(path.strip(), label)
    return frozenset(ids)


def make_train_loader(cfg: TrainConfig, builder: ExampleBuilder, rank: int, world_size: int,
                      skip_batches: int = 0) -> DataLoader:
    """An endless DataLoader of padded micro-batches for this process, resuming after `skip_batches`."""
    stream = AITWStream(
        cfg.data, transform=builder, accept=builder.accepts, seed=cfg.seed, buffer_size=cfg.shuffle_buffer,
        sample=cfg.sample, weights=cfg.task_weight, episode_ids=episode_ids(cfg.split_file, cfg.split), repeat=True,
        rank=rank, world_size=world_size, history=cfg.history, plan=cfg.plan)
    stream.skip_batches(skip_batches, cfg.batch_size)
    # a private generator: creating the iterator must not draw from the global RNG that the
    # checkpoint restores, or a resumed run would diverge from an uninterrupted one
    return DataLoader(
        stream, batch_size=cfg.batch_size, num_workers=cfg.workers,
        collate_fn=BatchCollator(builder.tokenizer.pad_id), generator=torch.Generator().manual_seed(cfg.seed),
        persistent_workers=False, prefetch_factor=4 if cfg.workers else None)


def load_val_pairs(cfg: TrainConfig) -> list[tuple[Any, Any]]:
    """The validation (Step, Sample) pairs: whole episodes from --val-data, about --val-max-steps of them."""
    if not cfg.val_data:
        return []
    ids = episode_ids(cfg.val_split_file, cfg.val_split)
    shards = resolve_shards(cfg.val_data)
    pairs = list(eval_pairs(shards, ids, cfg.val_max_steps, cfg.history, cfg.plan))
    if not pairs:
        raise ValueError(f"--val-data {','.join(cfg.val_data)} holds no episodes"
                         + (f" of split {cfg.val_split!r}" if ids is not None else ""))
    return pairs


def prompt_limits(cfg: TrainConfig) -> PromptLimits:
    """The prompt limits of training and validation: `--history` previous actions (the default
    PromptLimits keeps 8, which silently cut longer histories before)."""
    return PromptLimits(max_history=cfg.history)


def make_builder(cfg: TrainConfig, tokenizer: ActionTokenizer, model_config: Any) -> ExampleBuilder:
    """The per-sample example builder used by the training DataLoader."""
    augment = Augment(shift=cfg.augment_shift, text_swap=cfg.augment_text, read=cfg.augment_read,
                      history_drop=cfg.augment_history, seed=cfg.seed)
    return ExampleBuilder(tokenizer, model_config, fmt=cfg.fmt, with_plan=cfg.with_plan, limits=prompt_limits(cfg),
                          augment=augment, grounding=cfg.grounding_weight > 0,
                          box_text=cfg.box_text_boxes if cfg.box_text_weight > 0 else 0,
                          box_text_split=cfg.box_text_split, goal_words=cfg.goal_word_weight > 0)

