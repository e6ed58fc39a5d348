"""Read and write AITW (Android in the Wild) episodes from TFRecord shards, streaming.

    from autoui.data.aitw import read_episodes
    for ep in read_episodes("data/aitw/general"):         # a folder, files, or globs
        print(ep.episode_id, ep.goal, [s.action.kind for s in ep.steps])

Records are CRC-checked; a damaged shard raises `CorruptRecordError` (file, byte position,
record index) unless `skip_corrupt=True`, which skips and counts (pass a `ReadStats`).
A step's `dataset` is the name of the folder holding its shard.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from autoui.data.example import Episode, RecordDecodeError, Step, decode_step, encode_step
from autoui.data.tfrecord import (
    CorruptRecordError,
    PathLike,
    ReadStats,
    TFRecordWriter,
    expand_paths,
    iter_records,
    shard_files,
)

__all__ = [
    "AITWWriter", "CorruptRecordError", "Episode", "ReadStats", "Step", "dataset_dirs", "iter_steps",
    "read_episodes", "write_episodes", "DATASETS",
]

log = logging.getLogger("autoui.data.aitw")

DATASETS = ("general", "google_apps", "install", "single", "web_shopping")
"""AITW's five datasets, named as their folders in the public bucket."""


def iter_steps(
    paths: PathLike | Iterable[PathLike], *, skip_corrupt: bool = False, stats: ReadStats | None = None
) -> Iterator[Step]:
    """Yield every step of the given shards, in file order then record order."""
    stats = stats if stats is not None else ReadStats()
    for path in expand_paths(paths):
        dataset = path.parent.name
        for index, pos, data in iter_records(path, skip_corrupt=skip_corrupt, stats=stats):
            try:
                step = decode_step(data, dataset)
            except RecordDecodeError as exc:
                err = CorruptRecordError(path, pos, index, str(exc))
                if not skip_corrupt:
                    raise err from None
                stats.records -= 1  # counted as read by the framing layer, but not usable
                stats.note(err, truncated=False)
                continue
            stats.steps += 1
            yield step


def read_episodes(
    paths: PathLike | Iterable[PathLike], *, skip_corrupt: bool = False, stats: ReadStats | None = None
) -> Iterator[Episode]:
    """Group consecutive records into episodes (ordered by step_id); warn about gaps and splits."""
    stats = stats if stats is not None else ReadStats()
    seen: set[tuple[str, str]] = set()
    current: list[Step] = []
    for step in iter_steps(paths, skip_corrupt=skip_corrupt, stats=stats):
        if current and (step.episode_id, step.dataset) != (current[0].episode_id, current[0].dataset):
            yield _finish(current, seen, stats)
            current = []
        current.append(step)
    if current:
        yield _finish(current, seen, stats)


def _finish(steps: list[Step], seen: set[tuple[str, str]], stats: ReadStats) -> Episode:
    steps.sort(key=lambda s: s.step_id)
    first = steps[0]
    key = (first.episode_id, first.dataset)
    if key in seen:
        log.warning("episode %s (%s) appears again after other episodes; its records are not consecutive",
                    first.episode_id, first.dataset)
    seen.add(key)
    ids = [s.step_id for s in steps]
    expected = max(first.episode_length, len(steps))
    if ids != list(range(len(steps))) or len(steps) != first.episode_length:
        missing = sorted(set(range(expected)) - set(ids))
        log.warning("episode %s (%s): step ids %s are not 0..%d (episode_length %d; missing %s)",
                    first.episode_id, first.dataset, _short(ids), first.episode_length - 1,
                    first.episode_length, _short(missing))
    stats.episodes += 1
    return Episode(episode_id=first.episode_id, goal=first.goal, dataset=first.dataset, steps=steps)


def _short(values: list[int], n: int = 10) -> str:
    return str(values) if len(values) <= n else f"{values[:n]}... ({len(values)} in all)"


def dataset_dirs(root: PathLike) -> dict[str, Path]:
    """The dataset folders under `root` (one per dataset, holding shards), by name.

    `root` itself counts as a single dataset when it holds shards and no such sub-folders.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such data folder: {root}")
    found = {d.name: d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")
             and shard_files(d)}
    if not found and shard_files(root):
        found = {root.name: root}
    if not found:
        raise FileNotFoundError(f"{root} holds no dataset folders with shards (expected e.g. {root}/general/)")
    return found


class AITWWriter:
    """Write steps as AITW records to one shard: `with AITWWriter(path) as w: w.write_episode(ep)`."""

    def __init__(self, path: PathLike, compress: bool = True):
        self._writer = TFRecordWriter(path, compress=compress)
        self.path = self._writer.path

    @property
    def count(self) -> int:
        """Records written so far."""
        return self._writer.count

    def write_step(self, step: Step) -> None:
        """Append one step as one record."""
        self._writer.write(encode_step(step))

    def write_episode(self, episode: Episode) -> None:
        """Append the episode's steps, consecutively and in step order."""
        for step in sorted(episode.steps, key=lambda s: s.step_id):
            self.write_step(step)

    def close(self) -> None:
        """Flush and close the shard."""
        self._writer.close()

    def __enter__(self) -> "AITWWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_episodes(path: PathLike, episodes: Iterable[Episode], compress: bool = True) -> int:
    """Write episodes to one shard; returns the number of records (steps) written."""
    with AITWWriter(path, compress=compress) as writer:
        for episode in episodes:
            writer.write_episode(episode)
        return writer.count
