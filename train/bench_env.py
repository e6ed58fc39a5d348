"""Benchmark one environment step (action + settle + screenshot) on MiniWoB++ and a desktop page.

    .venv/bin/python train/bench_env.py --steps 200 --json bench_env.json

Times taps on an empty spot of `click-button` (the episode never ends, so every step
does the same work), its parts (tap alone, settle alone, screenshot alone), a reset,
and a step of a full 1280x800 desktop viewport. Prints a table and writes a JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import date
from pathlib import Path
from typing import Callable

from autoui.actions import Action
from autoui.envs.browser import BrowserEnv
from autoui.envs.miniwob import MiniWoBEnv, serve_html


def timed(fn: Callable[[], object], n: int, warmup: int = 5) -> dict[str, float]:
    """Median / p95 / mean in milliseconds of `n` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    ms = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t) * 1000)
    ms.sort()
    return {"n": n, "median_ms": statistics.median(ms), "p95_ms": ms[int(0.95 * (n - 1))], "mean_ms": statistics.fmean(ms)}


def bench_miniwob(steps: int, scale: float) -> dict[str, dict[str, float]]:
    empty = Action.tap(0.97, 0.97)  # below the buttons: click-button ignores it
    with MiniWoBEnv("click-button", scale=scale) as env:
        env.reset(seed=0)
        out = {f"miniwob step (scale {scale:g})": timed(lambda: env.step(empty), steps)}
        css = env.to_css(*empty.touch_yx)
        out["  tap only"] = timed(lambda: env.page.mouse.click(*css), steps)
        out["  settle only"] = timed(env.settle, steps)
        out["  screenshot only"] = timed(env.screenshot, steps)
        out["miniwob reset (same task)"] = timed(lambda: env.reset(seed=1), max(10, steps // 10))
    return out


def bench_desktop(steps: int) -> dict[str, dict[str, float]]:
    url = serve_html() + "miniwob/click-button.html"  # any local page; the whole 1280x800 viewport is captured
    with BrowserEnv(viewport="desktop") as env:
        env.reset(url)
        return {"desktop 1280x800 step": timed(lambda: env.step(Action.tap(0.99, 0.99)), max(20, steps // 4))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--json", default="bench_env.json")
    args = parser.parse_args()
    rows = bench_miniwob(args.steps, args.scale) | bench_desktop(args.steps)
    result = {
        "date": date.today().isoformat(), "device": f"{platform.processor() or platform.machine()}, CPU only",
        "python": platform.python_version(), "target_median_ms": 50, "rows": rows,
    }
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"{'what':<30} {'n':>5} {'median ms':>10} {'p95 ms':>8} {'mean ms':>8}")
    for name, r in rows.items():
        print(f"{name:<30} {r['n']:>5} {r['median_ms']:>10.1f} {r['p95_ms']:>8.1f} {r['mean_ms']:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
