"""Which vision front end can learn to tell MiniWoB's words apart? A probe on rendered text.

MiniWoB++ draws its "random" words (links, options, tabs, tree items, checkboxes) from a
closed list of 169 lorem-ipsum words. The default model reads them at chance online. This
probe separates the front end from everything else: pages of those words in Liberation Sans
(Arial's metrics) at 14 px, i.e. MiniWoB's 10 px text at the area view's 1.4x, are rendered
at random places on a 224-px canvas (unlimited, never repeated), and a classifier on ONE
image token, the token under a word's centre, must name the word (169 classes). Every
variant is trained the same way (AdamW 5e-4, cosine, bf16 autocast) for `--steps` steps of
`--batch` pages (~37 words each), and scored on 64 held-out pages.

Variants (comma list in `--variants`):
- `vit28`: the shipped model's vision tower (28-px patches, 8 x 8 tokens), from `--model`.
- `vit14`: the same tower with 14-px patches (16 x 16 tokens, `autoui.model.vision.repatch`:
  patch kernel average-pooled, positions interpolated, FlexiViT-style), from `--model`.
- `cnn`: a 5-layer CNN, fresh, read at its 28 x 28 map (8-px cells).
- `poolN`: the CNN's map average-pooled to N x N tokens (e.g. pool16, pool8).
- `shuffleK`: the CNN's map with K x K cells concatenated into one token and projected
  (a pixel-unshuffle merger; shuffle2 = 14 x 14 tokens, shuffle4 = 7 x 7).

    python train/probe_words.py --model models/default-model --variants vit28,vit14,cnn,pool16,pool8,shuffle2,shuffle4 \
        --json train/results/probe_words.json

`--freeze-tower` trains the head alone: how well a trained tower's features already name the
words (docs/train.md section 18).

A caveat built into the task: a coarse token can hold parts of several words (a 28-px token
spans two lines of MiniWoB text), and the probe asks for the one centred there, so coarse
grids have a ceiling below 100% even for a perfect reader.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

try:
    import autoui  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F
from torch import nn

from autoui.model.preprocess import ScreenPreprocessor  # noqa: E402
from autoui.train.word_pages import FONT, centre_cells, load_font, lorem_words, page_batch  # noqa: E402

SIZE, FONT_PX, CLASSES = 224, 14, 200  # CLASSES >= the 169 words


def pages(rng: random.Random, n: int, words: list[str], font: Any) -> tuple[torch.Tensor, ...]:
    """n pages -> (pixels [n, 3, S, S] in [-1, 1], page of each word, y, x, word index)."""
    return page_batch(rng, n, words, font, ScreenPreprocessor(SIZE))


def _cnn() -> nn.Sequential:
    """224 px -> [256, 28, 28]; the last layer sees ~9 cells (72 px) across, about a word."""
    return nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.GELU(), nn.Conv2d(32, 64, 3, 2, 1), nn.GELU(),
                         nn.Conv2d(64, 128, 3, 2, 1), nn.GELU(), nn.Conv2d(128, 256, (3, 9), 1, (1, 4)), nn.GELU())


class CNNTokens(nn.Module):
    """The CNN's map as tokens: every cell (`merge` None), `pool` N x N averages, or `shuffle` K x K concatenations."""

    def __init__(self, mode: str = "cells", k: int = 1):
        super().__init__()
        self.body, self.mode, self.k, self.dim = _cnn(), mode, k, 256
        self.side = {"cells": 28, "pool": k, "shuffle": 28 // max(k, 1)}[mode]
        self.merge = nn.Linear(256 * k * k, 256) if mode == "shuffle" else None

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # -> [B, N, 256]
        fmap = self.body(pixels)
        if self.mode == "pool":
            fmap = F.adaptive_avg_pool2d(fmap, self.k)
        elif self.mode == "shuffle":
            fmap = F.pixel_unshuffle(fmap, self.k)
        tokens = fmap.flatten(2).transpose(1, 2)
        return self.merge(tokens) if self.merge is not None else tokens


class ViTTokens(nn.Module):
    """The model's vision tower (HF's `last_hidden_state`), optionally re-patched to 14 px."""

    def __init__(self, model_dir: str, patch: int):
        super().__init__()
        from autoui.model.vision import repatch
        from autoui.model.vlm import AutoUIModel

        self.vision = AutoUIModel.from_pretrained(model_dir).vision.float()
        if self.vision.config.image_size != SIZE:
            raise SystemExit(f"{model_dir}: the probe renders {SIZE}-px pages for a {SIZE}-px vision tower; "
                             f"this one takes {self.vision.config.image_size} px")
        self.dim = self.vision.config.hidden_size
        if patch != self.vision.config.patch_size:
            try:
                self.vision = repatch(self.vision, patch)
            except ValueError as exc:
                raise SystemExit(f"{model_dir}: {exc}") from exc
        self.side = self.vision.embeddings.side

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.vision.last_hidden_state(pixels)[:, -self.side ** 2:]  # patch tokens only (CLIP: no class token)


def front_end(name: str, model_dir: str) -> nn.Module:
    """A variant name -> its token module (with `.side`, the token grid's side)."""
    if name in ("vit28", "vit14"):
        return ViTTokens(model_dir, int(name[3:]))
    if name == "cnn":
        return CNNTokens()
    for mode in ("pool", "shuffle"):
        if name.startswith(mode) and name[len(mode):].isdigit():
            return CNNTokens(mode, int(name[len(mode):]))
    raise SystemExit(f"unknown variant {name!r}: vit28, vit14, cnn, poolN, shuffleK")


class WordProbe(nn.Module):
    """Tokens -> the token under each word's centre -> a 2-layer head over CLASSES words."""

    def __init__(self, tokens: nn.Module):
        super().__init__()
        self.tokens, self.side = tokens, tokens.side
        self.head = nn.Sequential(nn.Linear(tokens.dim, 256), nn.GELU(), nn.Linear(256, CLASSES))

    def forward(self, pixels, page, y, x) -> torch.Tensor:
        return self.head(self.tokens(pixels)[page, centre_cells(y, x, self.side)])


def accuracy(probe: WordProbe, test: tuple[torch.Tensor, ...]) -> float:
    pixels, page, y, x, k = test
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        return 100.0 * (probe(pixels, page, y, x).argmax(-1) == k).float().mean().item()


def train_variant(name: str, args: argparse.Namespace, words: list[str], font: Any) -> dict[str, Any]:
    """Train one variant from seed 0; returns its test accuracy curve and seconds."""
    torch.manual_seed(0)
    rng, probe = random.Random(0), WordProbe(front_end(name, args.model))
    if args.freeze_tower:  # what the tower already holds: only the head learns
        probe.tokens.requires_grad_(False)
    opt = torch.optim.AdamW([q for q in probe.parameters() if q.requires_grad], lr=args.lr, weight_decay=0.01)
    test, curve, t0 = pages(random.Random(123), args.test_pages, words, font), [], time.time()
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / 30) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        pixels, page, y, x, k = pages(rng, args.batch, words, font)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = probe(pixels, page, y, x)
        loss = F.cross_entropy(logits.float(), k)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            curve.append([step + 1, round(accuracy(probe, test), 1)])
            print(f"{name:10s} step {step + 1:5d}  loss {loss.item():.3f}  test accuracy {curve[-1][1]:5.1f}%",
                  flush=True)
    return {"tokens": probe.side ** 2, "token_px": SIZE / probe.side, "curve": curve,
            "accuracy": curve[-1][1], "seconds": round(time.time() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="models/default-model", help="model whose vision tower vit28/vit14 start from")
    p.add_argument("--variants", default="vit28,vit14,cnn,pool16,pool8,shuffle2,shuffle4")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=8, help="pages per step")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--test-pages", type=int, default=64)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--freeze-tower", action="store_true",
                   help="train the head alone: how well the front end's features already name the words")
    p.add_argument("--font", default=FONT, help="a TrueType font with Arial's metrics")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    try:
        font = load_font(args.font, FONT_PX)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    torch.set_num_threads(args.threads)
    words = lorem_words()
    results = {name: train_variant(name, args, words, font) for name in args.variants.split(",")}
    print(f"\n{'variant':10s} {'tokens':>6s} {'token px':>8s} {'accuracy %':>10s}  (chance {100 / len(words):.1f}%)")
    for name, r in results.items():
        print(f"{name:10s} {r['tokens']:6d} {r['token_px']:8.1f} {r['accuracy']:10.1f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"words": len(words), "steps": args.steps, "batch": args.batch,
                                               "model": args.model, "freeze_tower": args.freeze_tower,
                                               "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
