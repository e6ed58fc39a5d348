"""`autoui export-hf MODEL_DIR OUT_DIR`: write an HF transformers Llava checkpoint of an autoui model."""
from __future__ import annotations

import argparse
import logging

from autoui.cli import CLIError

log = logging.getLogger("autoui.cli.export_hf")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `export-hf` subcommand."""
    p = subparsers.add_parser(
        "export-hf", help="export a model directory as an HF LlavaForConditionalGeneration checkpoint",
        description="Convert MODEL_DIR (written by AutoUIModel.save_pretrained) into OUT_DIR, loadable with "
                    "transformers' LlavaForConditionalGeneration.from_pretrained and servable by vLLM.")
    p.add_argument("model_dir", help="autoui model directory (config.json + model.safetensors + tokenizer files)")
    p.add_argument("out_dir", help="where to write the HF checkpoint (created if missing)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Export; user errors (missing or malformed model dir) become a one-line CLIError."""
    from autoui.model.config import ConfigError
    from autoui.model.hf_export import ExportError, export_hf

    try:
        out = export_hf(args.model_dir, args.out_dir)
    except (ConfigError, ExportError) as exc:
        raise CLIError(str(exc)) from exc
    print(out)
    return 0
