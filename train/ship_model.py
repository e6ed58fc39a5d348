"""Copy a trained run's final model into models/default-model/ (the model `autoui` loads by default).

    python train/ship_model.py runs/miniwob-default/final [--dtype float16]

Weights are stored in half precision to keep the repository small (serving casts back to
fp32 on CPU, bf16 on CUDA). The run's train_config.json goes along as the recipe (with soup.json
for an averaged model, train/average_models.py), and its
screen.json (which screenshots it learned on, autoui.data.screen) so evaluation shows it the
same kind.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from autoui.data.screen import SCREEN_FILE
from autoui.model.soup import SOUP_FILE
from autoui.model.vlm import AutoUIModel
from autoui.model.weights import save_derived

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_final", help="a model directory written by train/sft.py (RUN/final)")
    p.add_argument("--out", default=str(REPO / "models" / "default-model"))
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    args = p.parse_args(argv)
    src, out = Path(args.run_final), Path(args.out)
    model = AutoUIModel.from_pretrained(src, dtype=getattr(torch, args.dtype))
    if out.exists():
        shutil.rmtree(out)
    save_derived(model, src, out, sidecars=["train_config.json", SOUP_FILE, SCREEN_FILE])  # the recipe; the screens it learned on
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"shipped {model.num_parameters():,} parameters ({args.dtype}) to {out}: {size:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
