"""Write a deeper copy of a model that still computes exactly what the original did.

    python train/grow_model.py models/default-model --decoder-layers 2 --vision-layers 2 --out runs/grown/init

New layers are appended to the decoder and the vision tower as copies of each tower's last
layer with their residual outputs zeroed (`autoui.model.grow.grow_depth`), so the copy's
actions equal the original's until `train/sft.py --init DIR` trains them. Why: the default
model underfits its own training screens (docs/train.md section 16).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import autoui  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoui.data.screen import SCREEN_FILE
from autoui.model.grow import grow_depth
from autoui.model.vlm import AutoUIModel
from autoui.model.weights import save_derived


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="a model directory (save_pretrained layout)")
    p.add_argument("--decoder-layers", type=int, default=0, help="decoder layers to append")
    p.add_argument("--vision-layers", type=int, default=0, help="vision-tower layers to append")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    src, out = Path(args.model), Path(args.out)
    model = AutoUIModel.from_pretrained(src)
    before = (model.config.decoder.num_layers, model.config.vision.num_layers)
    try:
        grow_depth(model, args.decoder_layers, args.vision_layers)
    except ValueError as exc:
        raise SystemExit(f"{src}: {exc}") from exc
    save_derived(model, src, out, sidecars=[SCREEN_FILE])  # the screens it learned on stay the ones it expects
    after = (model.config.decoder.num_layers, model.config.vision.num_layers)
    print(f"{out}: decoder {before[0]} -> {after[0]} layers, vision {before[1]} -> {after[1]} layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
