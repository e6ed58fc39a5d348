"""`autoui eval-miniwob`: online success rates of a policy on a MiniWoB++ task suite."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from autoui.envs.suite import add_suite_arguments


def register(subparsers: Any) -> None:
    """Add the `eval-miniwob` command."""
    p = subparsers.add_parser("eval-miniwob", help="evaluate a policy online on MiniWoB++", description=__doc__)
    p.add_argument("--policy", default="expert", help="registered policy name (expert; model with --model)")
    p.add_argument("--model", default=None, help="model checkpoint for --policy model (implies it)")
    p.add_argument("--kv-cache", default="plain", choices=["plain", "int8", "int4", "fp8"],
                   help="KV-cache storage of the model's runtime (--policy model)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights' dtype when serving the model "
                        "(auto: bf16 on CUDA, fp32 on CPU with a bf16 prefill on CPUs with AMX or AVX512-BF16)")
    p.add_argument("--type-from-goal", action="store_true",
                   help="the model's typed text must be a span the goal quotes (--policy model)")
    add_suite_arguments(p, episodes=10, seed=1000)
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--data-mode", default="test", choices=["train", "test"], help="MiniWoB's problem distribution")
    p.set_defaults(handler=run)


def _trained_view(model: str | None, policy: str) -> str:
    """The view the model was trained on (the shipped one when no --model); "task" for other policies."""
    from autoui.data.screen import model_view

    if policy != "model":
        return "task"
    if model is None:
        from autoui.agent import default_model_dir

        model = default_model_dir()
    return model_view(model)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, optionally write the JSON."""
    from autoui.cli import CLIError
    from autoui.envs.base import EnvError
    from autoui.envs.miniwob import MiniWoBEnv
    from autoui.envs.rollout import evaluate, format_table
    from autoui.envs.suite import SuiteError, load_suite
    from autoui.policy import UnknownPolicyError, make_policy

    if args.episodes < 1:
        raise CLIError("--episodes must be >= 1")
    policy = "model" if args.model else args.policy
    options = {"model_path": args.model} if args.model else {}
    if policy == "model":
        options["kv_cache"] = args.kv_cache
        options["dtype"] = args.dtype
        options["type_from_goal"] = args.type_from_goal
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    try:
        view = args.view or _trained_view(args.model, policy)
        suite = load_suite(args.suite)
        results = evaluate(
            lambda: MiniWoBEnv(scale=args.scale, data_mode=args.data_mode, chromium_path=args.chromium,
                               view=view),
            lambda env: make_policy(policy, env, **options), suite, args.episodes, args.seed, tasks,
        )
    except (SuiteError, EnvError, UnknownPolicyError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    results["policy"], results["view"] = policy, view
    print(format_table(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0
