"""Supervised fine-tuning of AutoUIModel on AITW-schema TFRecords (real AITW or our MiniWoB demos).

    # CPU, tiny model, synthetic or demo data
    .venv/bin/python train/sft.py --preset tiny --data data/demos --out runs/tiny --steps 200 --batch-size 8

    # 8 GPUs (bf16), Auto-UI's unified AITW mix with GoogleApps at 10%
    # (10 epochs of ~1.0M samples at 8 x 4 per step = ~320k steps; see docs/train.md)
    accelerate launch --config_file train/accelerate/8gpu.yaml train/sft.py \\
        --data data/aitw --split-file SPLIT.json --split train --sample google_apps=0.1 \\
        --preset siglip-base-qwen2-0.5b --out runs/aitw --steps 320000 --batch-size 4 --workers 4 --save-every 5000

    # continue an interrupted run exactly where its last checkpoint left off
    accelerate launch ... train/sft.py --resume runs/aitw

Every flag is a field of `autoui.train.config.TrainConfig` (run with --help for the list).
Writes RUN_DIR/train_config.json, metrics.jsonl, checkpoints/ and final/ (loadable with
`AutoUIModel.from_pretrained`, tokenizer included). See docs/train.md.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

try:
    import autoui  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoui.train.config import TrainConfig, TrainConfigError, add_dataclass_arguments, config_from_args


def build_parser() -> argparse.ArgumentParser:
    """The CLI, one flag per `TrainConfig` field."""
    parser = argparse.ArgumentParser(
        description="Supervised fine-tuning of an autoui model on AITW-schema TFRecords (HF accelerate).")
    add_dataclass_arguments(parser, TrainConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse flags, train, print where the model went. Returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        cfg = config_from_args(args)
    except TrainConfigError as exc:
        parser.error(str(exc))
    from autoui.data.splits import SplitError
    from autoui.data.stream import StreamError
    from autoui.model.config import ConfigError
    from autoui.model.tokenizer import TokenizerError
    from autoui.train.checkpoint import CheckpointError
    from autoui.train.loop import Trainer

    try:
        trainer = Trainer(cfg)
        final = trainer.train()
    except (TrainConfigError, CheckpointError, StreamError, SplitError, ConfigError, TokenizerError,
            FileNotFoundError) as exc:
        # configuration and data problems: one clear line, no traceback
        logging.getLogger("autoui.train").error("%s", exc)
        return 2
    if trainer.acc.is_main_process:
        if final is None:
            print(f"stopped at step {trainer.step}; continue with --resume {cfg.out}")
        else:
            print(f"final model: {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
