"""Write a copy of a model whose vision tower cuts the screenshot into smaller patches.

    python train/repatch_model.py models/default-model --patch 14 --out runs/default-p14/init

The patch kernel and position table are resized (`autoui.model.vision.repatch`), everything
else is copied, and the config says the new patch size, so prompts get (old / new)^2 times
more image tokens. The result is a starting point for `train/sft.py --init`: it has not
learned its finer grid yet. Why: docs/train.md section 11 (28-px tokens cannot tell
MiniWoB's words apart; the same tower at 14 px learns to).
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
from autoui.model.vlm import AutoUIModel
from autoui.model.weights import save_derived
from autoui.train.regrid import repatch_model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="a model directory (save_pretrained layout)")
    p.add_argument("--patch", type=int, required=True, help="the new patch size; must divide the current one")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    src, out = Path(args.model), Path(args.out)
    model = AutoUIModel.from_pretrained(src)
    before = model.config.num_image_tokens
    try:
        repatch_model(model, args.patch)
    except ValueError as exc:
        raise SystemExit(f"{src}: {exc}") from exc
    save_derived(model, src, out, sidecars=[SCREEN_FILE])  # the screens it learned on stay the ones it expects
    print(f"{out}: patch {args.patch}, {model.config.num_image_tokens} image tokens (was {before})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
