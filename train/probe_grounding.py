"""Can a fresh model learn to tap the only box on a blank screen? With and without the grounding loss.

A toy that isolates pointing from everything else: one blue box of random size and place on
a white 224 px screen, the goal "Click the button.", the target "point ; tap Y X" at its
centre. Trains a fresh preset (default: the shipped model's) and every `--every` steps
greedy-decodes 64 fixed test screens, reporting the median tap error (1/1000 of the screen)
and how many distinct taps it makes (1 = the same place for every screen).

    python train/probe_grounding.py --steps 300                      # next-token loss only
    python train/probe_grounding.py --steps 300 --grounding-weight 1  # + the grounding loss

Writes one JSON line per evaluation to stdout (and `--json FILE` with all of them).
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time

import torch

from autoui.actions import Action, ActionParseError, ActionType, format_action, parse_action
from autoui.model.config import load_preset
from autoui.model.preprocess import Letterbox
from autoui.model.prompt import build_inputs, decode_text, target_ids
from autoui.model.tokenizer import ActionTokenizer
from autoui.model.vlm import AutoUIModel
from autoui.train.examples import BatchCollator
from autoui.train.grounding import GroundingLoss, GroundingSpec, coordinate_token_ids, query_mask, tap_image_token

GOAL = "Click the button."
BOX = torch.tensor([0.2, 0.4, 0.8])[:, None, None]  # RGB in 0..1


def screen(rng: random.Random, size: int) -> tuple[torch.Tensor, tuple[float, float]]:
    """A normalised [3, S, S] screen with one box, and the box centre as normalized (y, x)."""
    img = torch.ones(3, size, size)
    h, w = rng.randint(16, 40) * size // 224, rng.randint(24, 70) * size // 224
    y0, x0 = rng.randint(0, size - h), rng.randint(0, size - w)
    img[:, y0:y0 + h, x0:x0 + w] = BOX
    return (img - 0.5) / 0.5, ((y0 + h / 2) / size, (x0 + w / 2) / size)


class Toy:
    """Batches of box screens with their prompt, labels and grounding targets."""

    def __init__(self, tok: ActionTokenizer, model: AutoUIModel):
        self.tok, self.cfg = tok, model.config
        self.prompt = build_inputs(tok, self.cfg, GOAL, [], "compact")
        self.coords = coordinate_token_ids(tok)
        size = self.cfg.image_size
        self.square = Letterbox(screen_h=size, screen_w=size, image_size=size, content_h=size, content_w=size)
        self.collate = BatchCollator(pad_id=self.cfg.pad_token_id)

    def batch(self, rng: random.Random, n: int) -> tuple[dict, list[tuple[float, float]]]:
        rows, centres = [], []
        for i in range(n):
            pixels, centre = screen(rng, self.cfg.image_size)
            answer = target_ids(self.tok, format_action(Action.tap(*centre), "compact", plan=(ActionType.DUAL_POINT,)))
            labels = [-100] * len(self.prompt) + answer
            rows.append({"input_ids": self.prompt + answer, "labels": labels, "pixel_values": pixels, "key": ("toy", i),
                         "ground_query": query_mask(labels, self.coords),
                         "ground_patch": tap_image_token(centre, self.square, self.cfg)})
            centres.append(centre)
        return self.collate(rows), centres


def evaluate(model: AutoUIModel, toy: Toy, test: dict, centres: list) -> tuple[float, int]:
    """-> (median tap error in 1/1000 of the screen, number of distinct taps)."""
    model.eval()
    ids = torch.tensor([toy.prompt] * len(centres))
    out = model.generate_greedy(test["pixel_values"], ids, max_new_tokens=16)
    model.train()
    errors, taps = [], set()
    for row, (ty, tx) in zip(out, centres):
        try:
            action = parse_action(decode_text(toy.tok, row)).action
        except ActionParseError:
            errors.append(1000.0)
            continue
        if not action.is_tap:
            errors.append(1000.0)
            continue
        py, px = action.touch_yx
        errors.append(1000 * ((py - ty) ** 2 + (px - tx) ** 2) ** 0.5)
        taps.add((round(py, 2), round(px, 2)))
    return statistics.median(errors), len(taps)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--grounding-weight", type=float, default=0.0)
    ap.add_argument("--grounding-layers", default="1,2")
    ap.add_argument("--grounding-readout", action="store_true")
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    tok = ActionTokenizer.load()
    model = AutoUIModel(load_preset(args.preset).with_tokenizer(tok))
    toy = Toy(tok, model)
    ground = None
    if args.grounding_weight > 0:
        layers = tuple(int(v) for v in args.grounding_layers.split(","))
        ground = GroundingLoss(model, GroundingSpec(args.grounding_weight, layers, readout=args.grounding_readout))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    train_rng, test_rng = random.Random(args.seed + 1), random.Random(args.seed + 99)
    test, centres = toy.batch(test_rng, 64)
    records, t0 = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        batch, _ = toy.batch(train_rng, args.batch_size)
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, step / max(1, args.warmup))
        _, loss = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], batch["labels"],
                        return_logits=False)
        total = loss if ground is None else loss + args.grounding_weight * ground.loss(batch)
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % args.every == 0 or step == args.steps:
            err, distinct = evaluate(model, toy, test, centres)
            rec = {"step": step, "loss": round(loss.item(), 4), "median_error": round(err, 1),
                   "distinct_taps": distinct, "seconds": round(time.perf_counter() - t0, 1)}
            records.append(rec)
            print(json.dumps(rec), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "records": records}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
