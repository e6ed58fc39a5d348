"""Training checkpoints: everything needed to continue a run exactly where it stopped.

    RUN_DIR/checkpoints/step-00000300/
        config.json, model.safetensors, tokenizer.json ...   (AutoUIModel.save_pretrained)
        trainer_state.pt    step, optimizer, lr scheduler, data position (main process)
        rng-rank{R}.pt      python / numpy / torch (CPU and CUDA) RNG states, one per process
    RUN_DIR/checkpoints/latest   name of the newest complete checkpoint

A checkpoint is written into a hidden temporary folder and renamed when every process has
finished, so `latest` never points at a partial one (a crash mid-save leaves the previous
checkpoint in charge). Works with any number of processes: every rank calls `save` and
`load`; only the main one writes shared files.
"""
from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger("autoui.train.checkpoint")

CHECKPOINTS = "checkpoints"
LATEST = "latest"
STATE_FILE = "trainer_state.pt"


class CheckpointError(RuntimeError):
    """A run directory without a usable checkpoint, or a checkpoint that does not fit this run."""


def rng_state() -> dict[str, Any]:
    """The RNG states of python, numpy and torch (CPU, and every CUDA device when present)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_name(step: int) -> str:
    """Folder name of the checkpoint taken after optimizer step `step`."""
    return f"step-{step:08d}"


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The newest complete checkpoint of `run_dir` (CheckpointError if there is none)."""
    root = Path(run_dir) / CHECKPOINTS
    pointer = root / LATEST
    if not pointer.is_file():
        raise CheckpointError(f"{run_dir} has no checkpoint to resume from (no {pointer}); "
                              "was it started with --save-every?")
    path = root / pointer.read_text().strip()
    if not (path / STATE_FILE).is_file():
        raise CheckpointError(f"{pointer} names {path.name}, which is incomplete or missing")
    return path


def save_checkpoint(accelerator: Any, run_dir: str | Path, step: int, model: Any, tokenizer: Any,
                    state: dict[str, Any], keep: int = 2) -> Path:
    """Write checkpoint `step` (call on every process). `state` holds picklable trainer state."""
    root = Path(run_dir) / CHECKPOINTS
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(rng_state(), tmp / f"rng-rank{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(tmp, tokenizer=tokenizer)
        torch.save(state, tmp / STATE_FILE)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        pointer_tmp = root / f".{LATEST}.tmp"
        pointer_tmp.write_text(final.name + "\n")
        pointer_tmp.replace(root / LATEST)
        _prune(root, keep)
        log.info("checkpoint %s written", final)
    accelerator.wait_for_everyone()
    return final


def _prune(root: Path, keep: int) -> None:
    done = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load_trainer_state(path: str | Path, rank: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(trainer state, this rank's RNG state) of checkpoint `path`."""
    path = Path(path)
    rng_file = path / f"rng-rank{rank}.pt"
    if not rng_file.is_file():
        raise CheckpointError(f"{path} has no RNG state for process {rank}: "
                              "was it written by a run with fewer processes?")
    # our own files: python/numpy RNG states are plain tuples, which weights_only rejects
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    rng = torch.load(rng_file, map_location="cpu", weights_only=False)
    return state, rng
