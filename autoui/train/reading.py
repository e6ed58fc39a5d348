"""Reading drills: extra "click on this text" examples made from the screens we already have.

Why: the tasks the default model fails most pick their target by a word (a link, a tab, a
button, an option, a tree item). A demonstration supervises reading one word per screen, the
target; the other words on the screen, which the model must tell it apart from, go unlabelled.
Every recorded step carries annotation boxes with their text (what OCR would report, as in
AITW), so any short text that appears once on a screen is a free one-step task: goal
`Click on the text "<text>".`, answer a tap at the centre of its box, then done.

A drill replaces the sample it was drawn for (same screenshot, no history); which box it
uses is drawn from the augmentation's random source, so each epoch drills other words.
"""
from __future__ import annotations

import dataclasses
import random
from collections import Counter
from typing import Any

from autoui.actions import Action, ActionType
from autoui.data.samples import normalize_space

MAX_WORDS = 4
MAX_CHARS = 30
GOAL = 'Click on the text "{}".'


def short_text(text: str) -> bool:
    """At most MAX_WORDS words and MAX_CHARS characters, with a letter or digit: a word-like label."""
    return 0 < len(text) <= MAX_CHARS and len(text.split()) <= MAX_WORDS and any(c.isalnum() for c in text)


def _readable(text: str) -> bool:
    """Short, and no quote that would break the goal's quoting."""
    return short_text(text) and '"' not in text


def drill_boxes(sample: Any) -> list[int]:
    """Indices of the boxes a drill may name: readable text, on screen, not the goal, and no other box with the same text."""
    texts = [normalize_space(t) for t in getattr(sample, "ui_text", ())]
    goal = normalize_space(sample.goal).lower()
    counts = Counter(t.lower() for t in texts)
    out = []
    for i, text in enumerate(texts):
        y, x, h, w = (float(v) for v in sample.ui_positions[i])
        centre_on_screen = 0.0 < y + h / 2 < 1.0 and 0.0 < x + w / 2 < 1.0
        unique = counts[text.lower()] == 1 and text.lower() != goal  # the goal banner is not a drill
        if _readable(text) and unique and h > 0 and w > 0 and centre_on_screen:
            out.append(i)
    return out


def reading_drill(sample: Any, rng: random.Random) -> Any:
    """A one-step "click on the text" sample on `sample`'s screen, or `sample` itself when no box qualifies."""
    boxes = drill_boxes(sample)
    return drill_on(sample, rng.choice(boxes)) if boxes else sample


def drill_on(sample: Any, i: int) -> Any:
    """The drill naming box `i` of `sample` (one of `drill_boxes`): its goal, a tap at the box's centre, then done."""
    y, x, h, w = (float(v) for v in sample.ui_positions[i])
    text = normalize_space(sample.ui_text[i])
    return dataclasses.replace(
        sample, goal=GOAL.format(text), history=(), target=Action.tap(y + h / 2, x + w / 2),
        plan=(ActionType.DUAL_POINT, ActionType.STATUS_TASK_COMPLETE))
