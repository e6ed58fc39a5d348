"""Run a model over AITW-schema data, write its predictions, and score them like `autoui eval-aitw`.

    .venv/bin/python train/eval_aitw.py --model runs/aitw/final --data data/aitw \\
        --split-file data/aitw/splits.json --split test --out runs/aitw/eval --batch-size 32

Writes OUT/predictions.jsonl (`{"episode_id", "step_id", "prediction"}` per step),
OUT/metrics.json (the very function behind `autoui eval-aitw`, called in-process, so the
numbers are identical to running that command on the predictions file) and OUT/run.json
(model, data, timing). The action format and history length come from the model's
train_config.json when it has one (written by train/sft.py), else from --fmt.
With --max-steps only the first whole episodes are predicted and scored (their ids go to
OUT/evaluated_episodes.json, which becomes the split for scoring).
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

from autoui.cli import CLIError

log = logging.getLogger("autoui.train.eval_aitw")


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(description="Predict and score an autoui model on AITW-schema data.")
    p.add_argument("--model", required=True, metavar="DIR", help="model dir (save_pretrained output, with tokenizer)")
    p.add_argument("--data", required=True, metavar="ROOT", help="folder with one sub-folder of shards per dataset")
    p.add_argument("--out", required=True, metavar="DIR", help="where predictions.jsonl and metrics.json go")
    p.add_argument("--split-file", metavar="F", help="JSON split file (label -> episode ids)")
    p.add_argument("--split", metavar="LABEL", help="which split of --split-file (e.g. test)")
    p.add_argument("--batch-size", type=int, default=16, help="screens decoded together")
    p.add_argument("--max-steps", type=int, default=None, help="stop after about this many steps (whole episodes)")
    p.add_argument("--fmt", choices=("compact", "autoui"), default=None, help="action format (default: the model's)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="decoding limit (default: by format)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--skip-corrupt", action="store_true", help="skip and count damaged records instead of failing")
    return p


def predict_file(args: argparse.Namespace, out: Path, ids: frozenset[str] | None) -> tuple[Path, list[str], int, float]:
    """Write predictions.jsonl; returns (path, evaluated episode ids, steps, seconds)."""
    import torch
    from tqdm import tqdm

    from autoui.agent import load_agent, trained_settings
    from autoui.cli.eval_aitw import data_dirs
    from autoui.model.prompt import PromptLimits
    from autoui.train.predict import batched, eval_pairs, predict_texts

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_agent(args.model, device=device)
    s = trained_settings(args.model)
    s["fmt"] = args.fmt or s["fmt"]
    limits = PromptLimits(max_history=s["history"])  # as many previous actions as training kept
    pairs = eval_pairs(list(data_dirs(args.data).values()), ids, args.max_steps, s["history"], s["plan"],
                       args.skip_corrupt)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else torch.autocast("cpu", enabled=False)
    path, episodes, steps, t0 = out / "predictions.jsonl", [], 0, time.perf_counter()
    with open(path, "w", encoding="utf-8") as f, autocast:
        for chunk in tqdm(batched(pairs, args.batch_size), desc="predict", unit=" batch", disable=None):
            texts = predict_texts(model, tokenizer, [smp for _, smp in chunk], s["fmt"], args.max_new_tokens, limits)
            for (step, _), text in zip(chunk, texts):
                f.write(json.dumps({"episode_id": step.episode_id, "step_id": int(step.step_id), "prediction": text}) + "\n")
                if not episodes or episodes[-1] != step.episode_id:
                    episodes.append(step.episode_id)
            steps += len(chunk)
    return path, episodes, steps, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    """Predict, then score with `autoui.cli.eval_aitw.run`. Returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from autoui.cli import eval_aitw

    try:
        if args.batch_size < 1 or (args.max_steps is not None and args.max_steps < 1):
            raise CLIError("--batch-size and --max-steps must be >= 1")
        if not (Path(args.model) / "config.json").is_file():
            raise CLIError(f"{args.model} is not a saved model (no config.json)")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        ids = eval_aitw.load_split_filter(args.split_file, args.split)
        preds, episodes, steps, seconds = predict_file(args, out, ids)
        if not steps:
            raise CLIError("no steps to evaluate" + (f" in split {args.split!r}" if ids is not None else ""))
        split_file, split = args.split_file, args.split
        if args.max_steps is not None:  # score exactly the episodes that were predicted
            split_file, split = str(out / "evaluated_episodes.json"), None
            Path(split_file).write_text(json.dumps(episodes) + "\n")
        info = {"model": str(args.model), "data": str(args.data), "steps": steps, "seconds": round(seconds, 3),
                "steps_per_s": round(steps / seconds, 3) if seconds else None, "batch_size": args.batch_size}
        (out / "run.json").write_text(json.dumps(info, indent=2) + "\n")
        print(f"predicted {steps} steps in {seconds:.1f}s ({info['steps_per_s']} steps/s)")
        return eval_aitw.run(argparse.Namespace(data=args.data, predictions=str(preds), out=str(out / "metrics.json"),
                                                split_file=split_file, split=split, skip_corrupt=args.skip_corrupt))
    except CLIError as exc:
        print(f"eval_aitw: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
