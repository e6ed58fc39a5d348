"""Re-patch a model to a finer image grid and fit the new tower to the old features first.

    python train/regrid_model.py runs/miniwob-area-s10/final --patch 14 \
        --data data/miniwob-area/extra3,data/miniwob-area/extra4 --out runs/p14-regrid

`train/repatch_model.py` resizes the patch kernel and position table and stops there. This
script goes on: on up to `--screens` screenshots of the demonstrations, it trains the
re-patched vision tower and projector so every fine token gives the coarse model's feature for
the token it lies in (`autoui.train.regrid`). The decoder is copied unchanged. The output is a
starting point for `train/sft.py --init`. Measured (docs/train.md section 17): the fit works
(relative error 0.57 -> 0.11), but the decoder, which reads where image tokens sit, does not act
like the coarse model on it, and supervised training starts at the same loss as from
`repatch_model.py`.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

try:
    import autoui  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from tqdm import tqdm

from autoui.data.aitw import iter_steps
from autoui.data.screen import SCREEN_FILE
from autoui.data.stream import resolve_shards
from autoui.model.preprocess import ScreenPreprocessor
from autoui.model.tokenizer import ActionTokenizer
from autoui.model.vlm import AutoUIModel
from autoui.model.weights import save_derived
from autoui.train.predict import eval_pairs, predict_texts
from autoui.train.regrid import (RegridConfig, coarse_features, fit_fine_grid, grid_side, repatch_model,
                                 repeat_on_grid)

log = logging.getLogger("regrid")


def screens(data: str, model: AutoUIModel, limit: int, every: int) -> torch.Tensor:
    """Every `every`-th step's screenshot of the shards under `data` (comma-separated), up to
    `limit`, preprocessed for `model`: [N, 3, S, S]."""
    pre = ScreenPreprocessor.from_config(model.config)
    out = []
    for i, step in enumerate(iter_steps(resolve_shards(data.split(",")))):
        if i % every == 0:
            out.append(pre(step.image)[0])
            if len(out) >= limit:
                break
    if not out:
        raise SystemExit(f"no screens under {data}")
    return torch.stack(out)


@torch.no_grad()
def agreement(coarse: AutoUIModel, fine: AutoUIModel, tokenizer_dir: Path, data: str, steps: int) -> dict:
    """On up to `steps` held-out steps: how often `fine`, and the decoder fed the coarse features
    repeated on the fine grid (the fit's exact target), give the coarse model's action text."""
    tok = ActionTokenizer.load(tokenizer_dir)
    samples = [s for _, s in eval_pairs(resolve_shards(data.split(",")), max_steps=steps)][:steps]
    side = grid_side(coarse)
    factor = grid_side(fine) // side
    exact = AutoUIModel(fine.config).eval()
    exact.load_state_dict(fine.state_dict())
    exact.encode_images = lambda px: repeat_on_grid(coarse.encode_images(px), side, factor)  # the targets themselves
    texts = {}
    for name, model in (("coarse", coarse.eval()), ("fitted", fine.eval()), ("exact_targets", exact)):
        texts[name] = [t for i in range(0, len(samples), 16) for t in predict_texts(model, tok, samples[i:i + 16])]
    same = {name: sum(a == b for a, b in zip(texts["coarse"], texts[name])) for name in ("fitted", "exact_targets")}
    return {"steps": len(samples), "same_action_text_as_coarse": same}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="the coarse model directory (save_pretrained layout)")
    p.add_argument("--patch", type=int, required=True, help="the new patch size; must divide the current one")
    p.add_argument("--data", required=True, help="AITW-schema shard folders (comma-separated) to take screens from")
    p.add_argument("--out", required=True)
    p.add_argument("--screens", type=int, default=4000, help="at most this many screenshots")
    p.add_argument("--every", type=int, default=4, help="take every N-th step's screenshot")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CPUs with AVX512-BF16 or AMX)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check-data", help="held-out shards: report how often the result acts like the coarse model")
    p.add_argument("--check-steps", type=int, default=96)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    torch.manual_seed(args.seed)
    src, out = Path(args.model), Path(args.out)
    coarse = AutoUIModel.from_pretrained(src)
    t0 = time.perf_counter()
    pixels = screens(args.data, coarse, args.screens, args.every)
    targets = coarse_features(coarse, pixels)
    log.info("%d screens and their %d-token features in %.0f s", len(pixels), targets.shape[1],
             time.perf_counter() - t0)
    fine = repatch_model(AutoUIModel.from_pretrained(src), args.patch)
    cfg = RegridConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                       bf16=args.bf16, seed=args.seed)
    t0 = time.perf_counter()
    losses = fit_fine_grid(fine, pixels, targets, cfg, progress=lambda r: tqdm(r, desc="regrid", unit="step"))
    seconds = time.perf_counter() - t0
    save_derived(fine, src, out, sidecars=[SCREEN_FILE])
    head, tail = losses[: min(20, len(losses))], losses[-min(20, len(losses)):]
    report = {"source": str(src), "patch": args.patch, "image_tokens": grid_side(fine) ** 2,
              "screens": len(pixels), "steps": args.steps, "seconds": round(seconds, 1),
              "loss_first_20": sum(head) / len(head), "loss_last_20": sum(tail) / len(tail)}
    if args.check_data:
        report["check"] = agreement(coarse, fine, src, args.check_data, args.check_steps)
    (out / "regrid.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
