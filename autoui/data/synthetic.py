"""Synthetic data in AITW's exact schema, and predictions for it, for demos, tests and benchmarks.

`generate_dataset(root)` writes real GZIP TFRecord shards (no file extension) into the five
dataset folders, with random screenshots of several sizes, annotation boxes, goals and a
realistic mix of actions. `generate_predictions(root, out)` writes a predictions file with
correct, perturbed, missing, garbage and unknown-id lines, and returns what the metric must
find. Both are deterministic for a given seed.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from autoui.actions import Action, ActionType, format_action
from autoui.data.aitw import DATASETS, AITWWriter, Episode, Step, dataset_dirs, read_episodes

# (height, width) of screenshots: phone aspect ratios at small sizes so files stay small
SCREEN_SHAPES = ((240, 108), (234, 108), (256, 144), (200, 120), (160, 96))
DEVICES = ("pixel_6", "pixel_4", "pixel_3a", "tablet_small", "emulator")
_GOALS = {
    "general": ("search for {x} on google", "what is the weather in {x}", "open the {x} app"),
    "google_apps": ("turn on {x} in settings", "open gmail and star the mail from {x}", "set an alarm for {x}"),
    "install": ("install the {x} app", "uninstall {x}", "open the play store and install {x}"),
    "single": ("tap on {x}", "scroll down in {x}", "go back from {x}"),
    "web_shopping": ("add {x} to the cart on amazon", "search ebay for {x}", "show the cart on bestbuy"),
}
_WORDS = ("wifi", "bluetooth", "paris", "headphones", "a red chair", "maps", "7 am", "calendar", "alice", "coffee")
# next-action mix after the first step (taps dominate AITW)
_KINDS = ("tap", "swipe", "type", "back", "home", "enter")
_KIND_P = (0.58, 0.13, 0.1, 0.07, 0.05, 0.07)


def _boxes(rng: np.random.Generator) -> np.ndarray:
    n = int(rng.integers(3, 13))
    h = rng.uniform(0.02, 0.1, n)
    w = rng.uniform(0.08, 0.5, n)
    y = rng.uniform(0.0, 1.0 - h)
    x = rng.uniform(0.0, 1.0 - w)
    return np.stack([y, x, h, w], axis=1).astype(np.float32)  # [N, 4]


def _screen(rng: np.random.Generator, shape: tuple[int, int], boxes: np.ndarray) -> np.ndarray:
    h, w = shape
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(180, 256, 3, dtype=np.uint8)  # light background
    for by, bx, bh, bw in boxes:
        y0, x0 = int(by * h), int(bx * w)
        img[y0:max(y0 + 1, int((by + bh) * h)), x0:max(x0 + 1, int((bx + bw) * w))] = rng.integers(0, 200, 3)
    return img


def _action(kind: str, rng: np.random.Generator, boxes: np.ndarray) -> Action:
    if kind == "tap":
        by, bx, bh, bw = boxes[rng.integers(len(boxes))]
        y, x = float(by + bh * rng.uniform(0.2, 0.8)), float(bx + bw * rng.uniform(0.2, 0.8))
        dy, dx = rng.uniform(-0.01, 0.01, 2) * rng.integers(0, 2)  # some taps wobble a little
        return Action.swipe((y, x), (float(np.clip(y + dy, 0, 1)), float(np.clip(x + dx, 0, 1))))
    if kind == "swipe":
        a = float(rng.uniform(0.1, 0.45))
        b = float(rng.uniform(a + 0.3, 0.95))  # long: far from the 0.04 tap threshold
        a, b = (a, b) if rng.random() < 0.5 else (b, a)
        c = float(rng.uniform(0.3, 0.7))
        if rng.random() < 0.75:  # vertical scrolls dominate
            return Action.swipe((a, c), (b, c))
        return Action.swipe((c, a), (c, b))
    if kind == "type":
        return Action.type(str(rng.choice(_WORDS)))
    return {"back": Action.back, "home": Action.home, "enter": Action.enter}[kind]()


def _episode_actions(rng: np.random.Generator, dataset: str, boxes_per_step: list[np.ndarray]) -> list[Action]:
    n = len(boxes_per_step)
    actions: list[Action] = []
    for i in range(n - 1):
        kind = "home" if i == 0 and dataset != "single" and rng.random() < 0.5 else str(rng.choice(_KINDS, p=_KIND_P))
        actions.append(_action(kind, rng, boxes_per_step[i]))
    actions.append(Action.complete() if rng.random() < 0.9 else Action.impossible())
    return actions


def make_episode(rng: np.random.Generator, dataset: str, episode_id: str) -> Episode:
    """One random episode in AITW's schema for `dataset`."""
    length = int(rng.integers(1, 4) if dataset == "single" else rng.integers(3, 10))
    shape_i = int(rng.integers(len(SCREEN_SHAPES)))
    goal = str(rng.choice(_GOALS.get(dataset, _GOALS["general"]))).format(x=str(rng.choice(_WORDS)))
    boxes = [_boxes(rng) for _ in range(length)]
    actions = _episode_actions(rng, dataset, boxes)
    api, activity = int(rng.integers(28, 34)), f"com.example.{dataset}/.Activity{int(rng.integers(10))}"
    steps = []
    for i, (b, a) in enumerate(zip(boxes, actions)):
        steps.append(Step(
            episode_id=episode_id, step_id=i, episode_length=length, goal=goal,
            image=_screen(rng, SCREEN_SHAPES[shape_i], b), action=a, ui_positions=b,
            ui_text=[str(rng.choice(_WORDS)) for _ in b], ui_types=[str(rng.choice(("TEXT", "ICON_HOME"))) for _ in b],
            android_api_level=api, device_type=DEVICES[shape_i], current_activity=activity, dataset=dataset,
        ))
    return Episode(episode_id=episode_id, goal=goal, dataset=dataset, steps=steps)


def generate_dataset(root: str | Path, episodes_per_dataset: int = 8, seed: int = 0, shards: int = 2,
                     datasets: Iterable[str] = DATASETS) -> dict[str, dict[str, int]]:
    """Write `episodes_per_dataset` episodes per dataset into `root/<dataset>/<dataset>-KKKKK-of-NNNNN`.

    Returns `{dataset: {"episodes": .., "steps": ..}}`.
    """
    if episodes_per_dataset < 1 or shards < 1:
        raise ValueError(f"need episodes_per_dataset >= 1 and shards >= 1, got {episodes_per_dataset}, {shards}")
    rng = np.random.default_rng(seed)
    summary = {}
    for d_index, name in enumerate(datasets):
        ids = [f"{d_index + 1}{int(v):017d}" for v in rng.choice(10**15, episodes_per_dataset, replace=False)]
        per_shard = -(-episodes_per_dataset // shards)
        steps = 0
        for k in range(shards):
            with AITWWriter(Path(root) / name / f"{name}-{k:05d}-of-{shards:05d}") as writer:
                for eid in ids[k * per_shard:(k + 1) * per_shard]:
                    writer.write_episode(make_episode(rng, name, eid))
                steps += writer.count
        summary[name] = {"episodes": episodes_per_dataset, "steps": steps}
    return summary


# -- predictions ---------------------------------------------------------------------

_GARBAGE = ("", "tap here please", "Action Decision: not sure", '{"action_type": 4}', "swipe 1 2 3", "🙂")


def _perturb(action: Action, rng: np.random.Generator) -> Action:
    """A wrong prediction (a TYPE keeps its code but gets other text: right action, wrong text)."""
    if action.is_tap:
        y, x = action.touch_yx
        return Action.tap((y + 0.5) % 1.0, x)  # 0.5 away: beyond 0.14 and any enlarged box (h <= 0.1)
    if action.is_swipe:
        (y0, x0), (y1, x1) = action.touch_yx, action.lift_yx
        return Action.swipe((x0, y0), (x1, y1))  # the other main axis
    if action.action_type == ActionType.TYPE:
        return Action.type("zzz " + str(rng.integers(1000)))
    others = [t for t in (ActionType.PRESS_BACK, ActionType.PRESS_HOME, ActionType.STATUS_TASK_COMPLETE)
              if t != action.action_type]
    return Action(others[int(rng.integers(len(others)))])


def generate_predictions(source: str | Path | Iterable[Episode], out: str | Path, seed: int = 0,
                         rates: tuple[float, float, float, float] = (0.6, 0.2, 0.1, 0.1),
                         unknown: int = 2) -> dict[str, int]:
    """Write JSON-lines predictions for the episodes under `source` (a data root or episodes).

    `rates` = shares of (correct, perturbed, missing, garbage) steps; `unknown` extra lines
    name no real step. Returns counts per category plus the numbers of steps whose prediction
    must action-match (`expect_action_match`) and text-match (`expect_text_match`).
    """
    rng = np.random.default_rng(seed)
    if isinstance(source, (str, Path)):
        source = read_episodes(list(dataset_dirs(source).values()))
    counts = dict.fromkeys(("steps", "correct", "perturbed", "missing", "garbage", "unknown",
                            "expect_action_match", "expect_text_match"), 0)
    categories = ("correct", "perturbed", "missing", "garbage")
    with open(out, "w", encoding="utf-8") as f:
        for ep in source:
            types = [s.action.action_type for s in ep.steps]
            for i, step in enumerate(ep.steps):
                cat = categories[int(rng.choice(4, p=rates))]
                counts["steps"] += 1
                counts[cat] += 1
                if cat == "missing":
                    continue
                fmt = "autoui" if rng.random() < 0.5 else "compact"
                if cat == "garbage":
                    text = str(rng.choice(_GARBAGE))
                else:
                    action = step.action if cat == "correct" else _perturb(step.action, rng)
                    counts["expect_action_match"] += cat == "correct" or action.action_type == ActionType.TYPE
                    counts["expect_text_match"] += cat == "correct"
                    text = format_action(action, fmt, plan=tuple(types[i:i + 4]))
                f.write(json.dumps({"episode_id": step.episode_id, "step_id": step.step_id, "prediction": text}) + "\n")
        for k in range(unknown):
            f.write(json.dumps({"episode_id": f"unknown-{k}", "step_id": 0, "prediction": "back"}) + "\n")
            counts["unknown"] += 1
    return counts
