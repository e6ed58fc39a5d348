"""Can a model read the words on a screen? Two probes on held-out demonstrations, per task.

- **drill**: on the first screen of each episode, the goal `Click on the text "X".` for one
  short text X that appears once on that screen (`autoui.train.reading`); a hit is a tap
  inside X's box (1% margin). Chance is 1 / (the screen's drillable boxes), reported too.
- **boxes** (vision side only): for each short-text box, the image tokens it covers are
  pooled as the box-text loss does (`autoui.train.box_text`), and scored against the token
  sets of the screen's other boxes. A hit is its own text scoring best.

    python train/probe_reading.py --model models/default-model --data data/miniwob/heldout --json out.json

Prints one table per probe and writes both to `--json`.
"""
from __future__ import annotations

import argparse
import collections
import json
import random
import sys
from pathlib import Path
from typing import Any

try:
    import autoui  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from autoui.actions import ActionParseError, parse_action
from autoui.agent import load_agent
from autoui.data.aitw import dataset_dirs, read_episodes
from autoui.data.samples import make_samples
from autoui.model.preprocess import ScreenPreprocessor
from autoui.train.box_text import box_text_tensors, vocab_log_probs
from autoui.train.predict import batched, predict_texts
from autoui.train.reading import drill_boxes, drill_on


def first_screens(data: str, limit: int) -> list[tuple[str, Any]]:
    """(task, first Sample) of up to `limit` episodes; the task is the episode id's middle part."""
    out = []
    for ep in read_episodes(list(dataset_dirs(data).values())):
        out.append((ep.episode_id.split("/")[1] if "/" in ep.episode_id else ep.dataset, make_samples(ep)[0]))
        if len(out) >= limit:
            break
    return out


def _inside(text: str, box: Any, margin: float = 0.01) -> bool:
    try:
        action = parse_action(text).action
    except ActionParseError:
        return False
    if not action.is_tap:
        return False
    (py, px), (y, x, h, w) = action.touch_yx, (float(v) for v in box)
    return y - margin <= py <= y + h + margin and x - margin <= px <= x + w + margin


def drill_probe(model: Any, tok: Any, screens: list[tuple[str, Any]], batch: int) -> dict[str, list[float]]:
    """Per task: [hit (0/1), chance] for each screen with a drillable box."""
    rng, items = random.Random(0), []
    for task, s in screens:
        boxes = drill_boxes(s)
        if boxes:
            i = rng.choice(boxes)
            items.append((task, drill_on(s, i), s.ui_positions[i], 1.0 / len(boxes)))
    out: dict[str, list[float]] = collections.defaultdict(list)
    for chunk in batched(items, batch):
        texts = predict_texts(model, tok, [d for _, d, _, _ in chunk], fmt="compact")
        for (task, _, box, chance), text in zip(chunk, texts):
            out[task].append((float(_inside(text, box)), chance))
    return out


@torch.no_grad()
def box_probe(model: Any, tok: Any, screens: list[tuple[str, Any]]) -> dict[str, list[float]]:
    """Per task: [hit (0/1), chance] for each box whose screen has another box of different text."""
    cfg, pre = model.config, ScreenPreprocessor.from_config(model.config)
    out: dict[str, list[float]] = collections.defaultdict(list)
    for task, s in screens:
        pixels, letterbox = pre(s.image)
        pool, target = box_text_tensors(s, letterbox, cfg, tok, boxes=8)
        used = target.sum(-1) > 0
        if int(used.sum()) < 2:
            continue
        pool, target = pool[used], target[used]
        feats = model.encode_images(pixels[None].to(model.device, model.dtype))[0].float()  # [N, D]
        logp = vocab_log_probs(pool @ feats, model.decoder.embed_tokens.weight)  # [M, V]
        sets = (target > 0).float()
        score = logp @ sets.T / sets.sum(-1)  # [M boxes, M token sets]
        same = (sets[:, None] == sets[None]).all(-1)
        for i in range(len(sets)):
            others = (~same[i]).nonzero().flatten()
            if len(others):
                out[task].append((float(score[i, i] > score[i, others].max()), 1.0 / (len(others) + 1)))
    return out


def summary(rows: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    """{"tasks": {task: {"n", "hit", "chance"}}, "hit", "chance", "n"}, rates in %."""
    def rate(pairs: list, k: int) -> float:
        return round(100 * sum(p[k] for p in pairs) / max(1, len(pairs)), 1)
    every = [p for pairs in rows.values() for p in pairs]
    return {"tasks": {t: {"n": len(p), "hit": rate(p, 0), "chance": rate(p, 1)} for t, p in sorted(rows.items())},
            "hit": rate(every, 0), "chance": rate(every, 1), "n": len(every)}


def show(name: str, result: dict[str, Any]) -> None:
    print(f"\n{name}: hit {result['hit']}% (chance {result['chance']}%) over {result['n']}")
    print(f"{'task':24s} {'n':>5s} {'hit %':>7s} {'chance %':>9s}")
    for task, r in result["tasks"].items():
        print(f"{task:24s} {r['n']:5d} {r['hit']:7.1f} {r['chance']:9.1f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, metavar="DIR")
    p.add_argument("--data", default="data/miniwob/heldout", metavar="ROOT", help="AITW-schema data with box texts")
    p.add_argument("--episodes", type=int, default=600, help="first screens of this many episodes")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tok = load_agent(args.model, device="cpu")
    screens = first_screens(args.data, args.episodes)
    result = {"model": args.model, "data": args.data, "episodes": len(screens),
              "drill": summary(drill_probe(model, tok, screens, args.batch_size)),
              "boxes": summary(box_probe(model, tok, screens))}
    show("drill (tap the named text)", result["drill"])
    show("boxes (vision side picks its own text)", result["boxes"])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
