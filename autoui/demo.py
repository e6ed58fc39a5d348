"""`make demo`: show the project working end to end on a fresh machine, with nothing to download.

1. The AITW evaluation pipeline: generate a small AITW-schema sample (real GZIP TFRecord
   shards), generate predictions in both text formats (right, wrong, missing, garbage),
   and score them with the official action-matching metric (`autoui eval-aitw`).
2. A live agent in headless Chromium on a few MiniWoB++ tasks: the shipped default model
   when one is present under `models/`, otherwise the scripted expert policy, printing
   goal, actions and success per episode and writing an HTML trajectory report with the
   taps drawn on the screenshots.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from autoui.actions import format_compact

log = logging.getLogger("autoui.demo")
DEMO_TASKS = ("click-button", "click-checkboxes", "enter-text", "login-user")


def demo_eval_aitw(out: Path) -> dict:
    """Generate AITW-schema data + predictions and score them with the real CLI."""
    from autoui.cli import main as cli_main
    from autoui.data.synthetic import generate_dataset, generate_predictions

    data = out / "aitw"
    summary = generate_dataset(data, episodes_per_dataset=40, seed=0)
    steps = sum(v["steps"] for v in summary.values())
    print(f"\n== 1. AITW evaluation pipeline: {steps} generated steps in {data}")
    counts = generate_predictions(data, out / "predictions.jsonl", seed=0)
    print(f"   predictions: {counts['correct']} right, {counts['perturbed']} wrong, "
          f"{counts['missing']} missing, {counts['garbage']} unparseable")
    code = cli_main(["eval-aitw", "--data", str(data), "--predictions", str(out / "predictions.jsonl"),
                     "--out", str(out / "metrics.json")])
    if code != 0:
        raise SystemExit(code)
    return counts


def _live_policy_name() -> tuple[str, dict]:
    """The default model when it is shipped, otherwise the expert."""
    try:
        from autoui.agent import default_model_dir
    except ImportError:
        return "expert", {}
    model_dir = default_model_dir()
    if model_dir is not None:
        # typed text copied from the goal's quotes (autoui.runtime.copy_text): MiniWoB goals quote it
        return "model", {"model_dir": str(model_dir), "type_from_goal": True}
    return "expert", {}


def demo_live(out: Path, tasks: tuple[str, ...], seed: int) -> list:
    """Run a policy live on MiniWoB tasks and write the HTML report."""
    from autoui.data.screen import model_view
    from autoui.envs.miniwob import MiniWoBEnv
    from autoui.envs.rollout import run_episode
    from autoui.policy import make_policy
    from autoui.report import ReportEpisode, ReportStep, write_report

    name, options = _live_policy_name()
    print(f"\n== 2. Live MiniWoB++ in headless Chromium, policy: {name} {options or ''}")
    results = []
    with MiniWoBEnv(view=model_view(options.get("model_dir"))) as env:  # the screens the model learned on
        for i, task in enumerate(tasks):
            policy = make_policy(name, env, **options)
            res = run_episode(env, policy, task, seed + i, max_steps=10)
            results.append(res)
            acts = ", ".join(format_compact(a) for a in res.actions)
            print(f"   {task:18s} {'OK  ' if res.success else 'FAIL'} goal: {res.goal!r}\n"
                  f"   {'':18s}      actions: {acts}")
    episodes = [ReportEpisode(f"{r.task} (seed {r.seed})", r.goal, r.success,
                              [ReportStep(o.screenshot, a) for o, a in r.steps], note=r.error or "")
                for r in results]
    path = write_report(out / "report.html", episodes, title=f"autoui demo ({name} policy)")
    print(f"   {sum(r.success for r in results)}/{len(results)} succeeded; report: {path.resolve()}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/demo", help="where data, metrics and the report go")
    parser.add_argument("--tasks", default=",".join(DEMO_TASKS), help="MiniWoB tasks for the live part")
    parser.add_argument("--seed", type=int, default=1_000_000, help="first seed of the live episodes")
    parser.add_argument("--skip-live", action="store_true", help="only the AITW evaluation part")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    demo_eval_aitw(out)
    if not args.skip_live:
        demo_live(out, tuple(t for t in args.tasks.split(",") if t), args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
