"""Average the weights of models trained from one start (a "model soup") into a new model directory.

    python train/average_models.py runs/miniwob-area-s10/final runs/miniwob-area-s11/final --out runs/soup
    python train/average_models.py A B C --weights 2,1,1 --out DIR

Every tensor of the result is the weighted mean of the inputs' (uniform unless --weights), saved in
fp32 with the first model's tokenizer, screen.json and train_config.json, and soup.json (the inputs
and weights); `train/ship_model.py DIR` ships it like any run. The inputs must share one architecture, one tokenizer and one kind of screen
(`autoui.model.soup`); averaging models from different starts gives nonsense, so use it on
stages or checkpoints of one line of training (docs/train.md section 20).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

try:
    import autoui  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoui.data.screen import SCREEN_FILE
from autoui.model.soup import SOUP_FILE, average_models
from autoui.model.tokenizer import TOKENIZER_FILE
from autoui.model.vlm import AutoUIModel
from autoui.model.weights import save_derived


def _same_file(dirs: list[Path], name: str) -> None:
    """Refuse inputs whose `name` differs (or exists in some only): they would not read prompts or screens alike."""
    texts = {(d / name).read_bytes() if (d / name).is_file() else None for d in dirs}
    if len(texts) > 1:
        raise SystemExit(f"the models' {name} differ; only models of one tokenizer and one kind of screen can be averaged")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="model directories (save_pretrained layout), at least 2")
    p.add_argument("--weights", default=None, help="comma-separated mixing weights, one per model (default: uniform)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    dirs = [Path(m) for m in args.models]
    for name in (TOKENIZER_FILE, SCREEN_FILE):
        _same_file(dirs, name)
    try:
        weights = None if args.weights is None else [float(v) for v in args.weights.split(",")]
        soup = average_models([AutoUIModel.from_pretrained(d) for d in dirs], weights)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    out = save_derived(soup, dirs[0], Path(args.out), sidecars=[SCREEN_FILE, "train_config.json"])
    recipe = {"models": [str(d) for d in dirs], "weights": weights or [1.0] * len(dirs)}
    (out / SOUP_FILE).write_text(json.dumps(recipe, indent=1) + "\n")  # how it was made; ship_model keeps it
    print(f"{out}: the mean of {len(dirs)} models ({', '.join(str(d) for d in dirs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
