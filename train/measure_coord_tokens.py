"""Measure how coordinate tokenization ("digits" vs "loc") changes sequence lengths and tap accuracy.

1. Token counts: builds one tokenizer per scheme from the same corpus
   (`autoui.model.tokenizer_corpus.corpus`) and counts tokens per action (+ eos) for both
   action formats, with and without the plan, over an AITW-like action mix
   (`action_mix`), plus the prompt text of an 8-action history.
2. With `--accuracy`: trains the `--preset` model (fresh weights, same seed) for `--steps`
   per scheme on a synthetic "tap the red/blue square" task (phone-shaped screens, two
   coloured squares, the goal names one) and reports, on held-out screens, how often the
   greedy output parses and how often the tap lands inside the named square.

Writes a JSON (default train/results/measure_coord_tokens.json) and prints a table.

    .venv/bin/python train/measure_coord_tokens.py
    .venv/bin/python train/measure_coord_tokens.py --accuracy --steps 1500 --preset tiny
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import random
import statistics
import time
from pathlib import Path

from autoui.actions import format_action
from autoui.model.prompt import text_ids
from autoui.model.tokenizer import COORD_SCHEMES, ActionTokenizer
from autoui.model.tokenizer_corpus import action_mix, corpus, random_action, random_goal

log = logging.getLogger("autoui.train.measure_coord_tokens")


def _stats(values: list[int]) -> dict[str, float]:
    ordered = sorted(values)
    return {"mean": round(statistics.fmean(values), 2), "p50": ordered[len(values) // 2],
            "p95": ordered[int(len(values) * 0.95)], "max": ordered[-1]}


def synthetic_mix(n: int, seed: int) -> list[tuple]:
    """(action, plan) pairs from `autoui.data.synthetic` episodes: a second, independent action mix."""
    import numpy as np

    from autoui.data.samples import make_samples
    from autoui.data.synthetic import make_episode

    rng, out = np.random.default_rng(seed), []
    while len(out) < n:
        episode = make_episode(rng, str(rng.choice(["general", "install", "web_shopping"])), f"e{len(out)}")
        out += [(s.target, s.plan) for s in make_samples(episode)]
    return out[:n]


def count_tokens(tok: ActionTokenizer, n: int, seed: int) -> dict:
    """Token counts per action (target + eos) and per 8-action-history prompt, per format."""
    mix = action_mix(n, seed)
    out: dict = {}
    synthetic = [format_action(a, "compact", plan) for a, plan in synthetic_mix(min(n, 2000), seed)]
    out["compact+plan (synthetic episodes)"] = {"all": _stats([len(ids) + 1 for ids in tok.encode_batch(synthetic)])}
    for fmt in ("compact", "autoui"):
        for with_plan in (False, True):
            texts = [format_action(a, fmt, plan if with_plan else None) for a, plan in mix]
            lengths = [len(ids) + 1 for ids in tok.encode_batch(texts)]
            for text in texts:
                assert tok.decode(tok.encode(text)) == text, f"round trip failed for {text!r}"
            by_kind: dict[str, list[int]] = {}
            for (action, _), length in zip(mix, lengths):
                by_kind.setdefault(action.kind, []).append(length)
            out[f"{fmt}{'+plan' if with_plan else ''}"] = {
                "all": _stats(lengths), "by_kind": {k: round(statistics.fmean(v), 2) for k, v in sorted(by_kind.items())}}
        rng = random.Random(seed)
        prompts = [len(text_ids(tok, random_goal(rng), [random_action(rng) for _ in range(8)], fmt))
                   for _ in range(min(n, 1000))]
        out[f"{fmt} prompt (8 history)"] = {"all": _stats(prompts)}
    return out


COLORS = {"red": (220, 40, 40), "blue": (40, 70, 220)}


def tap_screens(n: int, seed: int, shape: tuple[int, int] = (128, 64), squares: int = 2) -> list[tuple]:
    """`n` (screen uint8 [H, W, 3], goal, named square (y0, x0, y1, x1) normalized, target Action).

    `squares=1` draws only the red one (pure localisation); 2 adds a blue distractor.
    """
    import numpy as np

    from autoui.actions import Action

    rng = np.random.default_rng(seed)
    h, w = shape
    out = []
    for _ in range(n):
        img = rng.integers(200, 256, (h, w, 3), dtype=np.uint8)  # light, noisy background
        side = int(rng.integers(w // 6, w // 4))
        boxes = {}
        for color in list(COLORS)[:squares]:  # non-overlapping squares
            while True:
                y0, x0 = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
                if all(abs(y0 - b[0]) >= side or abs(x0 - b[1]) >= side for b in boxes.values()):
                    break
            boxes[color] = (y0, x0)
            img[y0:y0 + side, x0:x0 + side] = COLORS[color]
        color = str(rng.choice(list(boxes)))
        y0, x0 = boxes[color]
        box = (y0 / h, x0 / w, (y0 + side) / h, (x0 + side) / w)
        out.append((img, f"tap the {color} square", box, Action.tap((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)))
    return out


def _tap_batch(tok, config, pre, screens) -> dict:
    from autoui.data.collate import collate
    from autoui.model.prompt import build_inputs, target_ids

    examples = []
    for img, goal, _, target in screens:
        prompt = build_inputs(tok, config, goal, [], "compact")
        answer = target_ids(tok, format_action(target, "compact"))
        examples.append({"pixel_values": pre(img)[0], "input_ids": prompt + answer,
                         "labels": [-100] * len(prompt) + answer})
    return collate(examples, pad_id=tok.pad_id)


def _tap_eval(model, tok, config, pre, screens) -> dict:
    import torch

    from autoui.actions import ActionParseError
    from autoui.data.collate import collate
    from autoui.model.prompt import build_inputs, decode_action

    batch = collate([{"pixel_values": pre(img)[0], "input_ids": build_inputs(tok, config, goal, [], "compact")}
                     for img, goal, _, _ in screens], pad_id=tok.pad_id, padding_side="left")
    with torch.no_grad():
        new = model.generate_greedy(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], 12)
    parsed = hits = 0
    dists = []
    for row, (_, _, box, target) in zip(new.tolist(), screens):
        try:
            action = decode_action(tok, row).action
        except ActionParseError:
            continue
        parsed += 1
        y, x = action.touch_yx
        hits += action.is_tap and box[0] <= y <= box[2] and box[1] <= x <= box[3]
        dists.append(math.dist(action.touch_yx, target.touch_yx) if action.is_gesture else math.sqrt(2))
    return {"parsed": round(parsed / len(screens), 3), "tap_in_square": round(hits / len(screens), 3),
            "mean_dist": round(statistics.fmean(dists), 4) if dists else None}


def tap_accuracy(tok: ActionTokenizer, preset: str, steps: int, image_size: int = 0, squares: int = 2,
                 batch: int = 32) -> dict:
    """Train a fresh `preset` model for `steps` on the tap task; held-out tap accuracy and timings."""
    import dataclasses

    import torch

    from autoui.model.config import load_preset
    from autoui.model.preprocess import ScreenPreprocessor
    from autoui.model.vlm import AutoUIModel

    torch.manual_seed(0)
    config = load_preset(preset).with_tokenizer(tok)
    if image_size:
        config = dataclasses.replace(config, vision=dataclasses.replace(config.vision, image_size=image_size))
    model, pre = AutoUIModel(config), ScreenPreprocessor.from_config(config)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.05)
    start, loss = time.perf_counter(), None
    for step in range(steps):
        b = _tap_batch(tok, config, pre, tap_screens(batch, seed=1 + step, squares=squares))
        _, loss = model(b["pixel_values"], b["input_ids"], b["attention_mask"], b["labels"], return_logits=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0:
            log.info("%s step %d loss %.4f", tok.coords, step, loss.item())
    train_s = time.perf_counter() - start
    model.eval()
    result = _tap_eval(model, tok, config, pre, tap_screens(400, seed=10**6, squares=squares))
    result.update(steps=steps, batch=batch, squares=squares, train_s=round(train_s, 1), final_loss=round(loss.item(), 4),
                  params=model.num_parameters(), image_size=config.image_size)
    return result


def print_table(results: dict) -> None:
    """Mean (p95) tokens per row and scheme, then accuracy rows if present."""
    schemes = list(results["tokens"])
    rows = list(results["tokens"][schemes[0]])
    print(f"{'tokens per item (mean / p95)':34s}" + "".join(f"{s:>16s}" for s in schemes))
    for row in rows:
        cells = [results["tokens"][s][row]["all"] for s in schemes]
        print(f"{row:34s}" + "".join(f"{c['mean']:>10.2f} / {c['p95']:<3d}" for c in cells))
    print(f"{'vocab size':34s}" + "".join(f"{results['vocab'][s]:>16d}" for s in schemes))
    for s, acc in results.get("accuracy", {}).items():
        print(f"tap accuracy [{s}]: {acc}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000, help="actions in the measured mix")
    parser.add_argument("--vocab", type=int, default=2048, help="learned BPE vocabulary size")
    parser.add_argument("--seed", type=int, default=1, help="seed of the measured mix (the corpus uses seed 0)")
    parser.add_argument("--accuracy", action="store_true", help="also run the tap-accuracy training experiment")
    parser.add_argument("--preset", default="tiny", help="model preset for --accuracy")
    parser.add_argument("--steps", type=int, default=1500, help="training steps per scheme for --accuracy")
    parser.add_argument("--image-size", type=int, default=0, help="override the preset's image_size (0: keep)")
    parser.add_argument("--squares", type=int, choices=(1, 2), default=2, help="1: red square only; 2: plus a distractor")
    parser.add_argument("--out", default="train/results/measure_coord_tokens.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    texts = list(corpus(seed=0))
    results: dict = {"date": time.strftime("%Y-%m-%d"), "device": f"{platform.machine()} CPU",
                     "n_actions": args.n, "tokens": {}, "vocab": {}}
    toks = {}
    for scheme in COORD_SCHEMES:
        toks[scheme] = ActionTokenizer.build(texts, args.vocab, coords=scheme)
        results["vocab"][scheme] = toks[scheme].vocab_size
        results["tokens"][scheme] = count_tokens(toks[scheme], args.n, args.seed)
    if args.accuracy:
        results["accuracy"] = {s: tap_accuracy(t, args.preset, args.steps, args.image_size, args.squares) for s, t in toks.items()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
