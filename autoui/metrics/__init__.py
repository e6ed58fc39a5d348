"""AITW evaluation: the official action-matching rule and the scores built on it.

`match_actions` / `actions_match` implement the matching rule; `evaluate` (or the streaming
`Evaluator`) turns reference steps and predictions into per-dataset, overall and pooled
percentages; `load_predictions` reads the JSON-lines predictions file.
"""
from autoui.metrics.evaluate import (
    METRICS,
    Evaluator,
    PredictionsError,
    evaluate,
    format_table,
    load_predictions,
)
from autoui.metrics.matching import (
    BOX_GROWTH,
    TAP_DISTANCE,
    actions_match,
    enlarge_boxes,
    match_actions,
    normalize_typed,
    taps_in_target_box,
    texts_match,
)

__all__ = [
    "BOX_GROWTH", "METRICS", "TAP_DISTANCE", "Evaluator", "PredictionsError", "actions_match", "enlarge_boxes",
    "evaluate", "format_table", "load_predictions", "match_actions", "normalize_typed", "taps_in_target_box",
    "texts_match",
]
