"""Where do the goal's words look? Attention of one head from the goal tokens that name the
tapped text to that text's box, on held-out steps.

For every step whose goal names the text it taps (`autoui.train.goal_words`), each naming goal
token is a query; for each head asked, it reports the attention mass on the named box's
patches, how often the most attended patch is in the box, and chance (the box's share of the
patches). No training; the model is read as saved.

    python train/probe_goal_words.py --model runs/p14-goal/final --data data/reading-area-heldout \
        --heads 0:1,1:0,2:0 --json out.json
"""
from __future__ import annotations

import argparse
import json
import sys

import torch
from tqdm import tqdm

from autoui.data.stream import resolve_shards
from autoui.model.tokenizer import ActionTokenizer
from autoui.model.vlm import AutoUIModel
from autoui.train.examples import BatchCollator, ExampleBuilder
from autoui.train.goal_words import GoalWordLoss
from autoui.train.grounding import GroundingSpec
from autoui.train.predict import batched, eval_pairs


def parse_heads(text: str) -> list[tuple[int, int]]:
    """"0:1,2:0" -> [(layer 0, head 1), (layer 2, head 0)]."""
    out = []
    for part in text.split(","):
        layer, sep, head = part.strip().partition(":")
        if not sep or not layer.isdigit() or not head.isdigit():
            raise argparse.ArgumentTypeError(f"--heads expects LAYER:HEAD[,LAYER:HEAD...], got {part!r}")
        out.append((int(layer), int(head)))
    return out


def probe(model: AutoUIModel, tokenizer: ActionTokenizer, samples: list, heads: list[tuple[int, int]],
          batch_size: int = 16) -> dict[str, dict[str, float]]:
    """{"L{layer}h{head}": {"queries", "mass_on_box", "argmax_in_box", "chance"}} over `samples`."""
    builder = ExampleBuilder(tokenizer, model.config, goal_words=True)
    collate = BatchCollator(pad_id=tokenizer.pad_id)
    probes = {(layer, head): GoalWordLoss(model, GroundingSpec(1.0, (layer,), head)) for layer, head in heads}
    sums = {key: [0.0, 0.0, 0.0, 0] for key in probes}
    for chunk in tqdm(list(batched(samples, batch_size)), desc="probe", unit="batch"):
        batch = collate([builder(s) for s in chunk])
        with torch.no_grad():
            model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], batch["labels"],
                  return_logits=False)
            for (layer, head), p in probes.items():
                for attn, box in p.box_attention(batch).values():
                    s = sums[(layer, head)]
                    s[0] += float((attn * box).sum())
                    s[1] += float(box.gather(1, attn.argmax(-1, keepdim=True)).sum())
                    s[2] += float(box.float().mean(-1).sum())
                    s[3] += attn.shape[0]
    for p in probes.values():
        p.close()
    return {f"L{layer}h{head}": {"queries": n, "mass_on_box": m / max(n, 1), "argmax_in_box": a / max(n, 1),
                                 "chance": c / max(n, 1)}
            for (layer, head), (m, a, c, n) in sums.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="model dir (save_pretrained output, with tokenizer)")
    ap.add_argument("--data", required=True, help="AITW-schema data root (held-out steps)")
    ap.add_argument("--heads", type=parse_heads, default=parse_heads("0:1"), help="LAYER:HEAD pairs to probe")
    ap.add_argument("--max-steps", type=int, default=600, help="steps read (whole episodes)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = AutoUIModel.from_pretrained(args.model).float().eval()
    tokenizer = ActionTokenizer.load(args.model)
    samples = [s for _, s in eval_pairs(resolve_shards([args.data]), None, args.max_steps)]
    result = {"model": args.model, "data": args.data, "steps": len(samples),
              "heads": probe(model, tokenizer, samples, args.heads)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
