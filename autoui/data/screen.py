"""Which screenshots a dataset holds, and so which ones a model trained on it expects.

`autoui collect` records in its manifest how the environment showed the screen
(`{"view": "task" | "area", "scale": 1.0}`, see autoui.envs.miniwob). Training copies that
into the model directory as `screen.json`, and evaluation uses it to show the model the
kind of screen it learned on: a model trained on the play area below MiniWoB's goal banner
is shown that area, not the whole task. Data without a manifest (AITW, reading pages) says
nothing, and a model without `screen.json` gets the environment's default view.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
SCREEN_FILE = "screen.json"
DEFAULT_SCREEN = {"view": "task", "scale": 1.0}  # what manifests older than the field recorded


def manifest_screen(manifest: dict[str, Any]) -> dict[str, Any]:
    """The screen a parsed collection manifest was recorded with."""
    return dict(manifest.get("screen", DEFAULT_SCREEN))


def data_screen(dirs: list[str | Path]) -> dict[str, Any] | None:
    """The screen the collections in `dirs` were recorded with; None when none has a manifest.

    A data folder may be the collection's output folder or its `miniwob/` shard folder.
    Two collections recorded with different screens raise ValueError: a model cannot be
    shown both at once.
    """
    found: dict[str, dict[str, Any]] = {}
    for d in dirs:
        for folder in (Path(d), Path(d).parent):
            path = folder / MANIFEST
            if path.is_file():
                try:
                    found[str(d)] = manifest_screen(json.loads(path.read_text()))
                except (json.JSONDecodeError, TypeError, AttributeError) as exc:
                    raise ValueError(f"{path} is not a collection manifest ({exc})") from exc
                break
    first = next(iter(found.values()), None)
    if any(s != first for s in found.values()):
        raise ValueError(f"the training data mixes screens recorded differently: {found}")
    return first


def write_model_screen(model_dir: str | Path, screen: dict[str, Any] | None) -> None:
    """Record `screen` in a model directory (nothing when the data did not say)."""
    if screen is not None:
        (Path(model_dir) / SCREEN_FILE).write_text(json.dumps(screen, indent=1, sort_keys=True) + "\n")


def model_view(model_dir: str | Path | None, default: str = "task") -> str:
    """The view a model directory was trained on (`default` when it does not say)."""
    path = Path(model_dir) / SCREEN_FILE if model_dir is not None else None
    if path is None or not path.is_file():
        return default
    try:
        return str(json.loads(path.read_text())["view"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is unreadable ({exc}); expected {{\"view\": ..., \"scale\": ...}}") from exc
