"""AITW's action-matching rule (the official definition), vectorised over many steps.

Rules, for a predicted and a reference action on a screen with annotation boxes:
1. If either is not DUAL_POINT, they match iff their action codes are equal.
2. Both DUAL_POINT: each is a tap or a swipe (`Action.is_tap`, touch-lift <= 0.04);
   a tap never matches a swipe.
3. Two taps match if their touch points are within 0.14 (Euclidean, normalized), or if
   one enlarged annotation box contains both (edges included). Enlargement adds 1.4x the
   size, half on each side, clamps top/left at 0 and the size (not the far edge) at 1.
4. Two swipes match if their main axes agree: argmax(|touch - lift|) over (y, x); a tie
   goes to y, as argmax picks the first. Direction is not compared.
The arithmetic follows the reference code's order (change = 1.4 * h; top = y - change / 2;
height = h + change) so that values at the box edges land on the same side.

`taps_in_target_box` is a stricter companion that is *not* part of the published metric: the
predicted tap must land inside the smallest (not enlarged) box holding the reference tap. On
screens of short words close together, enlarged boxes overlap the neighbours, so a tap on
the wrong word often "matches"; the strict rate shows whether the model found the word.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from autoui.actions import Action, ActionType
from autoui.actions.autoui_format import clean_text

TAP_DISTANCE = 0.14
"""Two taps closer than this (normalized units, inclusive) match."""
BOX_GROWTH = 1.4
"""Enlarged boxes grow by this fraction of their height/width (half on each side)."""

_DUAL = int(ActionType.DUAL_POINT)
_NONE = -1  # action code for "no usable prediction": equal to no reference code


def enlarge_boxes(boxes: np.ndarray) -> np.ndarray:
    """[N, 4] (y, x, h, w) boxes -> [N, 4] enlarged (top, left, height, width)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    dh = BOX_GROWTH * boxes[:, 2]  # [N]
    dw = BOX_GROWTH * boxes[:, 3]
    return np.stack([
        np.maximum(0.0, boxes[:, 0] - dh / 2),
        np.maximum(0.0, boxes[:, 1] - dw / 2),
        np.minimum(1.0, boxes[:, 2] + dh),
        np.minimum(1.0, boxes[:, 3] + dw),
    ], axis=1)


def _in_boxes(yx: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """[M, 2] points vs [M, 4] enlarged boxes (row by row) -> [M] bool, edges included."""
    top, left, height, width = boxes.T
    y, x = yx.T
    return (y >= top) & (y <= top + height) & (x >= left) & (x <= left + width)


def _arrays(actions: Sequence[Action | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Codes [B], touch [B, 2], lift [B, 2], is_tap [B] of a batch of actions (None -> no action)."""
    n = len(actions)
    codes = np.full(n, _NONE, dtype=np.int64)
    touch = np.full((n, 2), -1.0)
    lift = np.full((n, 2), -1.0)
    tap = np.zeros(n, dtype=bool)
    for i, a in enumerate(actions):
        if a is None:
            continue
        codes[i] = int(a.action_type)
        touch[i], lift[i] = a.touch_yx, a.lift_yx
        tap[i] = a.is_tap  # one definition of "tap": the action space's
    return codes, touch, lift, tap


def _taps_share_box(rows: np.ndarray, p_touch: np.ndarray, r_touch: np.ndarray,
                    ui_positions: Sequence[np.ndarray], n: int) -> np.ndarray:
    """[n] bool: for the given rows, whether one enlarged box of that step holds both touch points."""
    out = np.zeros(n, dtype=bool)
    sizes = [len(ui_positions[i]) for i in rows]
    if not rows.size or not sum(sizes):
        return out
    owner = np.repeat(rows, sizes)  # [M] step of each box
    boxes = enlarge_boxes(np.concatenate([np.asarray(ui_positions[i]).reshape(-1, 4) for i in rows]))  # [M, 4]
    both = _in_boxes(p_touch[owner], boxes) & _in_boxes(r_touch[owner], boxes)  # [M]
    out[np.unique(owner[both])] = True
    return out


def match_actions(preds: Sequence[Action | None], refs: Sequence[Action],
                  ui_positions: Sequence[np.ndarray]) -> np.ndarray:
    """[B] bool: whether each predicted action matches its reference (None never matches)."""
    if not (len(preds) == len(refs) == len(ui_positions)):
        raise ValueError(f"got {len(preds)} predictions, {len(refs)} references, {len(ui_positions)} box sets")
    n = len(refs)
    p_code, p_touch, p_lift, p_tap = _arrays(preds)
    r_code, r_touch, r_lift, r_tap = _arrays(refs)
    both_dual = (p_code == _DUAL) & (r_code == _DUAL)

    both_tap = both_dual & p_tap & r_tap
    near = np.linalg.norm(p_touch - r_touch, axis=1) <= TAP_DISTANCE  # [B]
    boxed = _taps_share_box(np.flatnonzero(both_tap & ~near), p_touch, r_touch, ui_positions, n)
    taps_match = both_tap & (near | boxed)

    both_swipe = both_dual & ~p_tap & ~r_tap
    p_axis = np.argmax(np.abs(p_touch - p_lift), axis=1)  # 0 = y, 1 = x; ties -> y
    r_axis = np.argmax(np.abs(r_touch - r_lift), axis=1)
    swipes_match = both_swipe & (p_axis == r_axis)

    return np.where(both_dual, taps_match | swipes_match, p_code == r_code)


def taps_in_target_box(preds: Sequence[Action | None], refs: Sequence[Action],
                       ui_positions: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """([B] eligible, [B] hit): a reference tap inside at least one box is eligible; it is hit when
    the prediction is a tap inside the smallest such box (raw box, edges included)."""
    if not (len(preds) == len(refs) == len(ui_positions)):
        raise ValueError(f"got {len(preds)} predictions, {len(refs)} references, {len(ui_positions)} box sets")
    p_code, p_touch, _, p_tap = _arrays(preds)
    r_code, r_touch, _, r_tap = _arrays(refs)
    eligible = np.zeros(len(refs), dtype=bool)
    hit = np.zeros(len(refs), dtype=bool)
    for i in np.flatnonzero((r_code == _DUAL) & r_tap):
        boxes = np.asarray(ui_positions[i], dtype=np.float64).reshape(-1, 4)
        j = smallest_box_holding(r_touch[i], boxes)
        if j is None:
            continue
        eligible[i] = True
        hit[i] = bool(p_code[i] == _DUAL and p_tap[i] and _in_boxes(p_touch[i:i + 1], boxes[j:j + 1])[0])
    return eligible, hit


def smallest_box_holding(yx: Sequence[float] | np.ndarray, boxes: np.ndarray) -> int | None:
    """Index of the smallest (by area) of the raw [N, 4] boxes holding point `yx` (edges included), or None."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    holds = np.flatnonzero(_in_boxes(np.repeat(np.asarray(yx, dtype=np.float64)[None], len(boxes), axis=0), boxes))
    return int(holds[np.argmin(boxes[holds, 2] * boxes[holds, 3])]) if holds.size else None


def actions_match(pred: Action | None, ref: Action, ui_positions: np.ndarray | None = None) -> bool:
    """Whether one predicted action matches the reference on a screen with these [N, 4] boxes."""
    boxes = np.zeros((0, 4)) if ui_positions is None else ui_positions
    return bool(match_actions([pred], [ref], [boxes])[0])


def normalize_typed(text: str) -> str:
    """Typed text as Auto-UI compares it: quotes/backslashes dropped (as in its targets), lowercased, stripped."""
    return clean_text(text).lower().strip()


def texts_match(pred: Action | None, ref: Action) -> bool:
    """Auto-UI's text rule (without the action match): one normalised typed text contains the other."""
    if pred is None:
        return False
    a, b = normalize_typed(pred.typed_text), normalize_typed(ref.typed_text)
    return a in b or b in a
