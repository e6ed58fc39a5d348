"""Episode-wise train/validation/test splits stored as JSON, and filtering episodes by them.

A split file is either a dict `label -> [episode ids]` (AITW's and Auto-UI's files) or a
plain list of episode ids (label "all"). Ids may be JSON strings or integers; they are
compared as strings, as AITW stores episode ids as bytes of decimal digits.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

ALL = "all"
"""The label given to the ids of a split file that is a plain list."""


class SplitError(ValueError):
    """A split file that cannot be used: unreadable JSON, wrong shape, unknown label."""


T = TypeVar("T")


def load_splits(path: str | Path) -> dict[str, frozenset[str]]:
    """Read a split file into `label -> set of episode ids`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SplitError(f"split file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SplitError(f"{path} is not valid JSON: {exc}") from None
    if isinstance(data, list):
        data = {ALL: data}
    if not isinstance(data, dict):
        raise SplitError(f"{path}: expected a dict label -> list of episode ids, or a list; got {type(data).__name__}")
    splits: dict[str, frozenset[str]] = {}
    for label, ids in data.items():
        if not isinstance(ids, list):
            raise SplitError(f"{path}: split {label!r} must be a list of episode ids, got {type(ids).__name__}")
        bad = [i for i in ids if not isinstance(i, (str, int)) or isinstance(i, bool)]
        if bad:
            raise SplitError(f"{path}: split {label!r} holds non-id values such as {bad[0]!r}")
        splits[str(label)] = frozenset(str(i) for i in ids)
    return splits


def split_ids(path: str | Path, label: str | None = None) -> frozenset[str]:
    """The episode ids of one split; `label` may be omitted when the file holds a single split."""
    splits = load_splits(path)
    if label is None:
        if len(splits) != 1:
            raise SplitError(f"{path} holds splits {sorted(splits)}; name one")
        return next(iter(splits.values()))
    if label not in splits:
        raise SplitError(f"{path} has no split {label!r}; it has {sorted(splits)}")
    return splits[label]


def filter_by_ids(items: Iterable[T], ids: frozenset[str] | set[str]) -> Iterator[T]:
    """Keep the episodes (or steps: anything with `.episode_id`) whose id is in `ids`."""
    for item in items:
        if item.episode_id in ids:  # type: ignore[attr-defined]
            yield item
