"""Score predictions against AITW steps: action match, type accuracy, Auto-UI's text match, episode success.

Beside the published four, `tap_in_box` (over the `box_taps` reference taps that lie in an
annotation box) counts predicted taps inside the smallest such box, not enlarged: a stricter
rate that the published rule's grown boxes can hide (autoui.metrics.matching).

    from autoui.metrics import evaluate, load_predictions
    metrics = evaluate(iter_steps("data/aitw"), load_predictions("preds.jsonl"))

Per dataset ("subsets"), "overall" = the unweighted mean over datasets (as papers report
it) and "micro" = all steps pooled. Percentages are 0-100. A step without a prediction or
with unparseable text is wrong, and counted as `missing` / `invalid`.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autoui.actions import Action, ActionParseError, ParsedAction, parse_action
from autoui.metrics.matching import match_actions, taps_in_target_box, texts_match

log = logging.getLogger("autoui.metrics")

Key = tuple[str, int]  # (episode_id, step_id)
METRICS = ("action_match", "type_accuracy", "text_match", "episode_success")


class PredictionsError(ValueError):
    """A predictions file that cannot be read (bad JSON, missing keys, duplicates), naming the line."""


def load_predictions(path: str | Path) -> dict[Key, str]:
    """Read JSON lines `{"episode_id", "step_id", "prediction"}` into `(episode_id, step_id) -> text`."""
    preds: dict[Key, str] = {}
    try:
        f = open(path, encoding="utf-8")
    except OSError as exc:
        raise PredictionsError(f"cannot open predictions file {path}: {exc.strerror}") from None
    with f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            key, text = _prediction_line(line, f"{path}:{lineno}")
            if key in preds:
                raise PredictionsError(f"{path}:{lineno}: second prediction for episode {key[0]} step {key[1]}")
            preds[key] = text
    return preds


def _prediction_line(line: str, where: str) -> tuple[Key, str]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise PredictionsError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise PredictionsError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in ("episode_id", "step_id", "prediction") if k not in obj]
    if missing:
        raise PredictionsError(f"{where}: missing key(s) {missing}")
    ep, step, text = obj["episode_id"], obj["step_id"], obj["prediction"]
    if not isinstance(ep, (str, int)) or isinstance(ep, bool):
        raise PredictionsError(f"{where}: episode_id must be a string, got {ep!r}")
    if isinstance(step, bool) or not isinstance(step, int):
        raise PredictionsError(f"{where}: step_id must be an integer, got {step!r}")
    if not isinstance(text, str):
        raise PredictionsError(f"{where}: prediction must be a string, got {type(text).__name__}")
    return (str(ep), step), text


@dataclass
class _Counts:
    steps: int = 0
    action_match: int = 0
    type_match: int = 0
    text_match: int = 0
    missing: int = 0
    invalid: int = 0
    box_taps: int = 0  # reference taps inside an annotation box
    box_tap_hits: int = 0  # ... whose prediction tapped inside the smallest such box
    episodes: dict[Any, bool] = field(default_factory=dict)  # episode key -> all its steps matched so far

    def as_percent(self) -> dict[str, float]:
        ep = self.episodes
        return {
            "steps": self.steps,
            "action_match": _pct(self.action_match, self.steps),
            "type_accuracy": _pct(self.type_match, self.steps),
            "text_match": _pct(self.text_match, self.steps),
            "episode_success": _pct(sum(ep.values()), len(ep)),
            "tap_in_box": _pct(self.box_tap_hits, self.box_taps),
            "box_taps": self.box_taps,
        }


def _pct(n: int, d: int) -> float:
    return round(100.0 * n / d, 4) if d else 0.0


class Evaluator:
    """Streaming scorer: `add()` steps (any object with episode_id, step_id, dataset, action,
    ui_positions), then `result()`. Steps are matched in vectorised chunks."""

    def __init__(self, predictions: Mapping[Key, str | Action | ParsedAction], chunk: int = 4096):
        self.predictions = predictions
        self.chunk = chunk
        self.counts: dict[str, _Counts] = {}
        self.seen: set[Key] = set()
        self._pending: list[tuple[Any, Action | None]] = []

    def _resolve(self, step: Any, counts: _Counts) -> Action | None:
        key = (step.episode_id, int(step.step_id))
        self.seen.add(key)
        pred = self.predictions.get(key)
        if pred is None:
            counts.missing += 1
            return None
        if isinstance(pred, ParsedAction):
            return pred.action
        if isinstance(pred, Action):
            return pred
        try:
            return parse_action(pred).action
        except ActionParseError:
            counts.invalid += 1
            return None

    def add(self, step: Any) -> None:
        """Queue one reference step (scored when a chunk fills, or at `result()`)."""
        counts = self.counts.setdefault(step.dataset, _Counts())
        self._pending.append((step, self._resolve(step, counts)))
        if len(self._pending) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        steps = [s for s, _ in self._pending]
        preds = [p for _, p in self._pending]
        refs, boxes = [s.action for s in steps], [s.ui_positions for s in steps]
        matched = match_actions(preds, refs, boxes)  # [B]
        boxed, in_box = taps_in_target_box(preds, refs, boxes)  # [B], [B]
        for step, pred, ok, b, h in zip(steps, preds, matched.tolist(), boxed.tolist(), in_box.tolist()):
            c = self.counts[step.dataset]
            c.steps += 1
            c.action_match += ok
            c.type_match += pred is not None and pred.action_type == step.action.action_type
            c.text_match += ok and texts_match(pred, step.action)
            c.episodes[step.episode_id] = c.episodes.get(step.episode_id, True) and ok
            c.box_taps += b
            c.box_tap_hits += h
        self._pending.clear()

    @property
    def unknown(self) -> list[Key]:
        """Predictions whose (episode_id, step_id) matched no step seen so far."""
        return [k for k in self.predictions if k not in self.seen]

    def result(self) -> dict[str, Any]:
        """The metrics dict: {"subsets": {name: {...}}, "overall": {...}, "micro": {...}}."""
        self._flush()
        subsets = {}
        for name in sorted(self.counts):
            c = self.counts[name]
            subsets[name] = {**c.as_percent(), "missing": c.missing, "invalid": c.invalid}
        scored = [s for s in subsets.values() if s["steps"]]
        overall = {"steps": sum(s["steps"] for s in subsets.values())}
        for m in METRICS:
            overall[m] = round(float(np.mean([s[m] for s in scored])), 4) if scored else 0.0
        boxed = [s["tap_in_box"] for s in scored if s["box_taps"]]
        overall["tap_in_box"] = round(float(np.mean(boxed)), 4) if boxed else 0.0
        overall["box_taps"] = sum(s["box_taps"] for s in subsets.values())
        pooled = _Counts()
        for name, c in self.counts.items():
            for attr in ("steps", "action_match", "type_match", "text_match", "box_taps", "box_tap_hits"):
                setattr(pooled, attr, getattr(pooled, attr) + getattr(c, attr))
            pooled.episodes.update({(name, k): v for k, v in c.episodes.items()})
        return {"subsets": subsets, "overall": overall, "micro": pooled.as_percent()}


def evaluate(steps: Iterable[Any], predictions: Mapping[Key, str | Action | ParsedAction]) -> dict[str, Any]:
    """Score `predictions` (`(episode_id, step_id) -> action text or Action`) on `steps`; see module doc."""
    ev = Evaluator(predictions)
    for step in steps:
        ev.add(step)
    result = ev.result()
    unknown = ev.unknown
    if unknown:
        log.warning("%d predictions match no evaluated step (e.g. episode %s step %d)",
                    len(unknown), unknown[0][0], unknown[0][1])
    return result


def format_table(result: Mapping[str, Any]) -> str:
    """A readable table of a metrics dict (as returned by `evaluate`)."""
    head = (f"{'subset':<14}{'steps':>8}{'action':>9}{'type':>8}{'text':>8}{'episode':>9}{'in-box':>8}"
            f"{'missing':>9}{'invalid':>9}")
    lines = [head, "-" * len(head)]

    def row(name: str, m: Mapping[str, Any]) -> str:
        extra = f"{m['missing']:>9}{m['invalid']:>9}" if "missing" in m else ""
        return (f"{name:<14}{m['steps']:>8}{m['action_match']:>9.2f}{m['type_accuracy']:>8.2f}"
                f"{m['text_match']:>8.2f}{m['episode_success']:>9.2f}{m.get('tap_in_box', 0.0):>8.2f}{extra}")

    for name, m in result["subsets"].items():
        lines.append(row(name, m))
    lines.append("-" * len(head))
    lines.append(row("overall", result["overall"]))
    lines.append(row("micro", result["micro"]))
    return "\n".join(lines)
