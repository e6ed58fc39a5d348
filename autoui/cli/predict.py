"""`autoui predict`: the next action for one screenshot, goal and action history.

    autoui predict [--model DIR] --image screen.png --goal "open the settings app" \\
        [--history history.jsonl] [--format compact|autoui] [--json] [--kv-cache plain|int8|int4|fp8]

Without --model, the shipped model in models/default-model/ is used. Generation runs on
the inference runtime (KV cache, greedy) and is constrained to valid actions unless
--unconstrained is given.

Prints the action in Auto-UI's text format (coordinates are normalized (y, x) of the
input screenshot), or with --json a JSON object that also gives touch/lift in pixels
(x, y) of the input image. A model output that is not an action exits with code 2 and
shows the raw text.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from autoui.cli import CLIError

log = logging.getLogger("autoui.cli.predict")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `predict` subcommand."""
    p = subparsers.add_parser("predict", help="predict the next action for a screenshot and a goal",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None,
                   help="model directory (config.json, model.safetensors, tokenizer.json); default models/default-model")
    p.add_argument("--image", required=True, type=Path, help="screenshot (PNG/JPEG) of any size")
    p.add_argument("--goal", required=True, help="the task in words")
    p.add_argument("--history", type=Path, help="earlier actions: JSON list or lines of action strings or Action dicts")
    p.add_argument("--format", choices=("compact", "autoui"), default=None,
                   help="action format of the prompt history and output (default: the one the model was "
                        "trained with, from its train_config.json; else compact)")
    p.add_argument("--max-history", type=int, default=None,
                   help="most recent actions kept in the prompt (default: as many as the model was trained with)")
    p.add_argument("--max-new-tokens", type=int, default=96, help="generation limit (an action is ~4-80 tokens)")
    p.add_argument("--json", action="store_true", help="print a JSON object (with pixel coordinates)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--type-from-goal", action="store_true",
                   help="typed text must be a span the goal quotes (as written, upper or lower case)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights' dtype (auto: bf16 on CUDA, fp32 on CPU with a bf16 prefill on CPUs with AMX or AVX512-BF16)")
    p.add_argument("--kv-cache", choices=("plain", "int8", "int4", "fp8"), default="plain",
                   help="KV-cache storage of the runtime (plain = model dtype)")
    p.add_argument("--unconstrained", action="store_true",
                   help="let the model write any text (default: valid actions by construction)")
    p.set_defaults(handler=run)


def _inputs(args: argparse.Namespace) -> list:
    from autoui.agent import DEFAULT_MODEL_DIR, default_model_dir, read_history

    if args.model is None:
        args.model = default_model_dir()
        if args.model is None:
            raise CLIError(f"no --model given and no shipped model in {DEFAULT_MODEL_DIR}")
    if not args.model.is_dir():
        raise CLIError(f"--model {args.model} is not a directory")
    if not args.image.is_file():
        raise CLIError(f"--image {args.image} does not exist")
    if args.history is None:
        return []
    try:
        return read_history(args.history.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CLIError(f"cannot read --history {args.history}: {exc}") from None
    except ValueError as exc:
        raise CLIError(f"--history {args.history}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """Load the model, predict one action, print it. Returns the exit code."""
    from autoui.actions import ActionParseError
    from autoui.agent import RuntimeOptions, load_agent, predict_action, trained_settings
    from autoui.model.preprocess import ScreenError
    from autoui.model.prompt import PromptError, PromptLimits
    from autoui.model.tokenizer import TokenizerError

    history = _inputs(args)
    trained = trained_settings(args.model)
    try:
        max_history = trained["history"] if args.max_history is None else args.max_history
        limits = PromptLimits(max_history=max_history, max_target_tokens=args.max_new_tokens)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    try:
        model, tokenizer = load_agent(args.model, device=args.device, dtype=args.dtype)
    except (ValueError, OSError) as exc:  # ConfigError, TokenizerError, missing files...
        raise CLIError(f"cannot load model from {args.model}: {exc}") from None
    try:
        runtime = RuntimeOptions(kv_cache=args.kv_cache, constrained=not args.unconstrained,
                                 type_from_goal=args.type_from_goal)
        fmt = args.format or trained["fmt"]
        pred = predict_action(model, tokenizer, args.image, args.goal, history, fmt, limits, runtime)
    except ActionParseError as exc:
        # the message ends with the raw text (repr, cut at 200 chars)
        raise CLIError(f"model output is not a valid action: {exc}") from None
    except (ScreenError, PromptError, TokenizerError) as exc:
        raise CLIError(str(exc)) from None
    log.debug("raw output %r (%d tokens)", pred.raw_text, pred.new_tokens)
    print(json.dumps(pred.to_json(), ensure_ascii=False) if args.json else pred.autoui_text())
    return 0
