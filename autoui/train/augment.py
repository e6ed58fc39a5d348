"""Training-time augmentation that makes a small model look at the screen and read the goal.

Two failure modes of a model trained on a few thousand demonstrations, and their cures:

- **Position memorisation.** Many tasks put their targets at the same place every time, so
  the model learns "this task -> tap (y, x)" and never grounds taps in pixels. `shift`
  translates the whole screenshot by a random offset (up to `shift` of each side; the
  uncovered band takes the screen's border colour) and moves every tap by the same amount,
  so no position can be memorised. Taps are kept on the screen; swipes (scrolls) keep their
  points, as scrolling does not depend on where the content sits.
- **Text memorisation.** Demonstrations type a small pool of names and passwords, so the
  model learns to type a remembered word instead of copying it from the goal. With
  probability `text_swap`, each typed text that the goal quotes (case-insensitively) is
  replaced, in the goal, the target and the history alike, by a random string of the same
  shape (letters stay letters of the same case, digits stay digits); a target typed in
  upper or lower case keeps that transformation of the new goal text.

- **Counting instead of looking.** Where the history shows how far a task has got (taps on a
  spinner's arrow, a field already typed in), the model counts history entries instead of
  reading the screen, and counting fails where the history window is full. With probability
  `history_drop`, a sample keeps only its last k previous actions, k drawn from 1 .. len - 1
  (at least one stays, so "what did I just do" remains), so the screen must tell the rest.

All draws come from (seed, episode, step, epoch), so a run with augmentation is still a
pure function of its config and resumes exactly.
"""
from __future__ import annotations

import dataclasses
import random
import re
import string
from dataclasses import dataclass
from typing import Any

import numpy as np

from autoui.actions import Action, ActionType
from autoui.train.reading import reading_drill


@dataclass(frozen=True)
class Augment:
    """What to augment; all zero (the default) means samples pass through untouched."""

    shift: float = 0.0  # max translation, as a fraction of the screen's height / width
    text_swap: float = 0.0  # probability of swapping each typed text the goal quotes
    read: float = 0.0  # probability of replacing the sample by a reading drill (autoui.train.reading)
    history_drop: float = 0.0  # probability of keeping only the last k (1 .. len - 1) previous actions
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.shift < 0.5:
            raise ValueError(f"augment shift must be in [0, 0.5), got {self.shift}")
        if not 0.0 <= self.text_swap <= 1.0:
            raise ValueError(f"augment text_swap must be in [0, 1], got {self.text_swap}")
        if not 0.0 <= self.read <= 1.0:
            raise ValueError(f"augment read must be in [0, 1], got {self.read}")
        if not 0.0 <= self.history_drop <= 1.0:
            raise ValueError(f"augment history_drop must be in [0, 1], got {self.history_drop}")

    @property
    def enabled(self) -> bool:
        return self.shift > 0 or self.text_swap > 0 or self.read > 0 or self.history_drop > 0

    def __call__(self, sample: Any) -> Any:
        """A new Sample (same type) with the augmentations drawn for this sample and epoch."""
        if not self.enabled:
            return sample
        rng = random.Random(f"augment:{self.seed}:{sample.episode_id}:{sample.step_id}:{getattr(sample, 'epoch', 0)}")
        if self.read > 0 and rng.random() < self.read:
            sample = reading_drill(sample, rng)
        if self.history_drop > 0 and rng.random() < self.history_drop:
            sample = drop_history(sample, rng)
        if self.text_swap > 0:
            sample = swap_typed_text(sample, rng, self.text_swap)
        if self.shift > 0:
            sample = shift_screen(sample, rng, self.shift)
        return sample


def drop_history(sample: Any, rng: random.Random) -> Any:
    """`sample` with only its last k previous actions, k drawn from 1 .. len(history) - 1."""
    if len(sample.history) < 2:
        return sample
    return dataclasses.replace(sample, history=sample.history[-rng.randint(1, len(sample.history) - 1):])


# ---- translation ---------------------------------------------------------------------------
def _taps(sample: Any) -> list[tuple[float, float]]:
    acts = [*sample.history, sample.target]
    return [a.touch_yx for a in acts if a.is_tap]


def _offset_range(points: list[float], limit: float, margin: float) -> tuple[float, float]:
    """The offsets d in [-limit, limit] that keep every point inside [margin, 1 - margin]."""
    lo, hi = -limit, limit
    for p in points:
        lo, hi = max(lo, margin - p), min(hi, 1.0 - margin - p)
    return (lo, hi) if lo <= hi else (0.0, 0.0)


def _border_colour(image: np.ndarray) -> np.ndarray:
    """The most common colour on the screen's outer frame (the page background, usually)."""
    frame = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])  # [P, 3]
    colours, counts = np.unique(frame.reshape(-1, image.shape[-1]), axis=0, return_counts=True)
    return colours[int(np.argmax(counts))]


def translate(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`image` moved down by dy and right by dx pixels (negative: up / left), border-filled."""
    h, w = image.shape[:2]
    out = np.empty_like(image)
    out[...] = _border_colour(image)
    src_y, dst_y = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    src_x, dst_x = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[dst_y, dst_x] = image[src_y, src_x]
    return out


def _moved(action: Action, fy: float, fx: float) -> Action:
    if not action.is_tap:
        return action
    y, x = action.touch_yx
    return Action.tap(min(max(y + fy, 0.0), 1.0), min(max(x + fx, 0.0), 1.0))


def shift_screen(sample: Any, rng: random.Random, shift: float, margin: float = 0.01) -> Any:
    """`sample` with its screenshot translated and its taps (history and target) moved along."""
    h, w = sample.image.shape[:2]
    taps = _taps(sample)
    ylo, yhi = _offset_range([p[0] for p in taps], shift, margin)
    xlo, xhi = _offset_range([p[1] for p in taps], shift, margin)
    dy, dx = round(rng.uniform(ylo, yhi) * h), round(rng.uniform(xlo, xhi) * w)
    if dy == 0 and dx == 0:
        return sample
    fy, fx = dy / h, dx / w
    boxes = sample.ui_positions.copy()
    if len(boxes):
        boxes[:, 0] += fy
        boxes[:, 1] += fx
    return dataclasses.replace(
        sample, image=translate(sample.image, dy, dx), target=_moved(sample.target, fy, fx),
        history=tuple(_moved(a, fy, fx) for a in sample.history), ui_positions=boxes)


# ---- typed text ----------------------------------------------------------------------------
def random_like(text: str, rng: random.Random) -> str:
    """A random string of `text`'s shape: each letter a random letter of its case, each digit a digit."""
    out = []
    for c in text:
        if c.isdigit():
            out.append(rng.choice(string.digits))
        elif c.isalpha() and c.isascii():
            out.append(rng.choice(string.ascii_uppercase if c.isupper() else string.ascii_lowercase))
        else:
            out.append(c)
    return "".join(out)


def _pattern(text: str) -> re.Pattern[str]:
    """`text`, case-insensitive, not inside a longer word."""
    return re.compile(r"(?<!\w)" + re.escape(text) + r"(?!\w)", flags=re.IGNORECASE)


def _typed_as(typed: str, quoted: str, new_quoted: str) -> str:
    """The new typed text: `new_quoted` put through the case change that made `typed` from `quoted`."""
    if typed == quoted:
        return new_quoted
    if typed == quoted.upper():
        return new_quoted.upper()
    if typed == quoted.lower():
        return new_quoted.lower()
    return new_quoted


def _retyped(action: Action, old: str, new: str) -> Action:
    return Action.type(new) if action.action_type == ActionType.TYPE and action.typed_text == old else action


def swap_typed_text(sample: Any, rng: random.Random, p: float) -> Any:
    """`sample` with each goal-quoted typed text (target or history) swapped, each with probability p."""
    typed = [a.typed_text for a in (*sample.history, sample.target)
             if a.action_type == ActionType.TYPE and len(a.typed_text.strip()) >= 2]
    goal, target, history = sample.goal, sample.target, sample.history
    for text in dict.fromkeys(typed):  # distinct, in order
        pattern = _pattern(text)
        match = pattern.search(goal)
        if match is None or rng.random() >= p:
            continue
        quoted = match.group(0)
        new_quoted = random_like(quoted, rng)
        new_typed = _typed_as(text, quoted, new_quoted)
        goal = pattern.sub(lambda _: new_quoted, goal)
        target = _retyped(target, text, new_typed)
        history = tuple(_retyped(a, text, new_typed) for a in history)
    if goal == sample.goal:
        return sample
    return dataclasses.replace(sample, goal=goal, target=target, history=history)
