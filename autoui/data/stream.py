"""A streaming, shuffled, shardable training set over AITW-schema TFRecord shards.

AITW (5.7M steps) does not fit in memory, so training reads shards sequentially and
shuffles through a bounded buffer. Work is split over *units*: one unit per (accelerate
process rank, DataLoader worker). Each epoch permutes the shard list with the seed and
deals the shards round-robin to the units; when there are fewer shards than units every
unit reads all shards and keeps every `units`-th episode instead. Either way each
epoch's episodes are read by exactly one unit (no duplicates, no loss).

Everything random is derived from (seed, epoch, unit), so the stream is a pure function
of its arguments: the basis of exact resume. `skip_batches(n, batch_size)` makes the
next iteration drop what the first `n` DataLoader batches already delivered; dropped
items are counted but not transformed (no letterboxing, no tokenizing), so resuming
costs a re-read of the shards, never a re-run of preprocessing or the model.

Auto-UI's unified mix keeps only 10% of GoogleApps: `sample={"google_apps": 0.1}` keeps
an episode when a stable hash of its id falls below the fraction (the same episodes
every epoch, seed and machine).

`weights={"click-tab-2": 2.0, "click-test": 0.5}` re-balances a mix by task (the middle part
of our demonstrations' ids, `miniwob/<task>/<seed>`) or by dataset: an episode of weight w
is read floor(w) times per epoch and once more with probability w - floor(w), decided by a
stable hash of (seed, epoch, episode id), so resume stays exact and each epoch draws anew.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from autoui.data.aitw import dataset_dirs, read_episodes
from autoui.data.samples import make_samples
from autoui.data.tfrecord import expand_paths, shard_files

log = logging.getLogger("autoui.data.stream")


class StreamError(ValueError):
    """A stream that cannot work as configured (no shards, unknown dataset in `sample`, ...)."""


def dataset_key(name: str) -> str:
    """Normalise a dataset name so "GoogleApps", "google_apps" and "googleapps" compare equal."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def keep_episode(episode_id: str, fraction: float) -> bool:
    """True for a stable `fraction` of episode ids (hash-based, independent of seed and process)."""
    return fraction >= 1.0 or _unit_hash(str(episode_id)) < fraction


def _unit_hash(text: str) -> float:
    """A stable number in [0, 1) for `text` (the same on every machine, seed and process)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def episode_task(episode_id: str, dataset: str) -> str:
    """The task an episode demonstrates: `<task>` of an id `<dataset>/<task>/<n>`, else its dataset."""
    parts = str(episode_id).split("/")
    return parts[1] if len(parts) == 3 and parts[1] else str(dataset)


def copies_of(episode_id: str, weight: float, seed: int, epoch: int) -> int:
    """How often an episode of `weight` is read in `epoch`: floor(weight), plus one with probability of the rest."""
    whole = int(weight)
    rest = weight - whole
    if rest <= 0.0:
        return whole
    return whole + int(_unit_hash(f"{seed}:{epoch}:{episode_id}") < rest)


def unit_of(rank: int, world_size: int, worker: int, num_workers: int) -> tuple[int, int]:
    """(unit index, number of units) for a process rank and DataLoader worker."""
    if not (0 <= rank < world_size and 0 <= worker < max(1, num_workers)):
        raise StreamError(f"bad rank/worker: rank {rank} of {world_size}, worker {worker} of {num_workers}")
    workers = max(1, num_workers)
    return rank * workers + worker, world_size * workers


def assign_shards(shards: Sequence[Any], epoch: int, seed: int, unit: int, units: int) -> tuple[list[Any], bool]:
    """The shards `unit` reads in `epoch`, and whether it must further keep only every `units`-th episode."""
    order = list(shards)
    random.Random(f"shards:{seed}:{epoch}").shuffle(order)
    if len(order) >= units:
        return order[unit::units], False
    return order, True


def shuffle_buffer(items: Iterable[Any], size: int, rng: random.Random) -> Iterator[Any]:
    """Yield `items` in a shuffled order using a buffer of at most `size` items.

    Once full, each incoming item replaces a random slot whose occupant is yielded; the
    remainder is shuffled and drained at the end. Which item leaves depends only on `rng`
    and the count of items seen, never on their content.
    """
    buf: list[Any] = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = rng.randrange(size)
        out, buf[j] = buf[j], item
        yield out
    rng.shuffle(buf)
    yield from buf


def resolve_shards(paths: Any) -> list[str]:
    """Shard files of `paths`: files and globs as given; a folder is an AITW root (one sub-folder
    per dataset) or one dataset's folder of shards."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    out: list[str] = []
    for p in items:
        if Path(p).is_dir():
            for folder in dataset_dirs(p).values():
                out.extend(str(f) for f in shard_files(folder))
        else:
            out.extend(str(f) for f in expand_paths(p))
    return out


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class AITWStream(IterableDataset):
    """Chain-of-action samples from AITW-schema shards, shuffled and split across processes and workers.

    Args:
        paths: shard files, globs, AITW roots or dataset folders (see `resolve_shards`).
        transform: applied to each `Sample` as it leaves the shuffle buffer (in the worker);
            must be deterministic. None yields the `Sample` itself.
        accept: optional cheap predicate on a `Sample`, checked before the buffer; rejected
            samples (e.g. targets longer than the model allows) are counted and logged.
        seed: drives shard order and buffer shuffling.
        buffer_size: shuffle buffer capacity in samples (1 disables shuffling within shards).
        sample: {dataset name: fraction of episodes to keep}; names as in the shard folders.
        weights: {task or dataset name: times each of its episodes is read per epoch, > 0;
            fractions are drawn per epoch}; see the module docstring.
        episode_ids: if given, only these episodes (e.g. one label of a split file).
        repeat: loop over epochs forever (training) instead of stopping after one.
        rank, world_size: this process among all (default: torch.distributed or 0 of 1).
        history, plan: passed to `make_samples`.
    """

    def __init__(self, paths: Any, *, transform: Callable[[Any], Any] | None = None,
                 accept: Callable[[Any], bool] | None = None, seed: int = 0,
                 buffer_size: int = 1000, sample: dict[str, float] | None = None,
                 weights: dict[str, float] | None = None,
                 episode_ids: Iterable[str] | None = None, repeat: bool = False,
                 rank: int | None = None, world_size: int | None = None,
                 history: int = 8, plan: int = 4, skip_corrupt: bool = False):
        super().__init__()
        self.shards = resolve_shards(paths)
        if not self.shards:
            raise StreamError(f"no TFRecord shards found in {paths!r}")
        if buffer_size < 1:
            raise StreamError(f"buffer_size must be >= 1, got {buffer_size}")
        self.transform, self.accept, self.seed = transform, accept, int(seed)
        self.buffer_size, self.repeat = int(buffer_size), repeat
        self.history, self.plan, self.skip_corrupt = history, plan, skip_corrupt
        self.episode_ids = frozenset(episode_ids) if episode_ids is not None else None
        self.fractions = self._check_sample(sample or {})
        self.weights = self._check_weights(weights or {})
        if rank is None or world_size is None:
            rank, world_size = _dist_rank_world()
        self.rank, self.world_size = int(rank), int(world_size)
        self._skip_batches, self._batch_size = 0, 1

    def _check_sample(self, sample: dict[str, float]) -> dict[str, float]:
        present = {dataset_key(Path(s).parent.name): Path(s).parent.name for s in self.shards}
        out = {}
        for name, frac in sample.items():
            key = dataset_key(name)
            if key not in present:
                raise StreamError(f"sample names dataset {name!r} but the shards' folders are {sorted(present.values())}")
            if not 0.0 < float(frac) <= 1.0:
                raise StreamError(f"sample fraction for {name!r} must be in (0, 1], got {frac}")
            out[key] = float(frac)
        return out

    @staticmethod
    def _check_weights(weights: dict[str, float]) -> dict[str, float]:
        out = {}
        for name, w in weights.items():
            if not 0.0 < float(w) < float("inf"):
                raise StreamError(f"weight for {name!r} must be > 0 and finite, got {w}")
            out[dataset_key(name)] = float(w)
        return out

    def _copies(self, episode: Any, epoch: int) -> int:
        if not self.weights:
            return 1
        w = self.weights.get(dataset_key(episode_task(episode.episode_id, episode.dataset)))
        if w is None:
            w = self.weights.get(dataset_key(episode.dataset), 1.0)
        return copies_of(episode.episode_id, w, self.seed, epoch)

    def skip_batches(self, batches: int, batch_size: int) -> None:
        """Make the next iteration skip what the first `batches` DataLoader batches of this rank held."""
        if batches < 0 or batch_size < 1:
            raise StreamError(f"skip_batches needs batches >= 0 and batch_size >= 1, got {batches}, {batch_size}")
        self._skip_batches, self._batch_size = int(batches), int(batch_size)

    def _items_to_skip(self, worker: int, num_workers: int) -> int:
        # the DataLoader takes batches from its workers in strict round-robin order, each
        # batch made of `batch_size` consecutive items of one worker: of the first n batches,
        # worker w made ceil((n - w) / W)
        workers = max(1, num_workers)
        n = self._skip_batches
        mine = max(0, -(-(n - worker) // workers)) if n > worker else 0
        return mine * self._batch_size

    def _keep(self, episode: Any) -> bool:
        if self.episode_ids is not None and episode.episode_id not in self.episode_ids:
            return False
        frac = self.fractions.get(dataset_key(episode.dataset))
        return frac is None or keep_episode(episode.episode_id, frac)

    def unit_samples(self, unit: int, units: int, epoch: int) -> Iterator[Any]:
        """The (unshuffled) samples `unit` of `units` reads in `epoch`."""
        shards, by_episode = assign_shards(self.shards, epoch, self.seed, unit, units)
        seen = rejected = 0
        for shard in shards:
            for episode in read_episodes([shard], skip_corrupt=self.skip_corrupt):
                seen += 1
                if (by_episode and (seen - 1) % units != unit) or not self._keep(episode):
                    continue
                copies = self._copies(episode, epoch)
                samples = make_samples(episode, history=self.history, plan=self.plan) if copies else []
                for _ in range(copies):
                    for s in samples:
                        if self.accept is None or self.accept(s):
                            yield s
                        else:
                            rejected += 1
        if rejected:
            log.warning("unit %d/%d epoch %d: %d samples rejected by the accept filter", unit, units, epoch, rejected)

    def _epochs(self, unit: int, units: int) -> Iterator[Any]:
        epoch = 0
        while True:
            produced = 0
            for s in self.unit_samples(unit, units, epoch):
                produced += 1
                yield dataclasses.replace(s, epoch=epoch) if epoch else s
            if produced == 0 and self.repeat:
                # ends instead of spinning; a rank with no data at all fails in the trainer, but
                # one empty worker among several only unbalances the round-robin (and exact resume)
                log.warning("unit %d/%d has no samples (more processes x workers than episodes after filtering?)",
                            unit, units)
            if not self.repeat or produced == 0:
                return
            epoch += 1

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # a fresh DataLoader asks worker 0 first, but after n batches the next one belongs to
        # worker n % W: rotate the roles so the resumed sequence continues the original one
        worker = (worker + self._skip_batches) % num_workers
        unit, units = unit_of(self.rank, self.world_size, worker, num_workers)
        rng = random.Random(f"buffer:{self.seed}:{unit}:{units}")
        skip = self._items_to_skip(worker, num_workers)
        for item in shuffle_buffer(self._epochs(unit, units), self.buffer_size, rng):
            if skip > 0:
                skip -= 1  # already trained on before the checkpoint: no transform needed
                continue
            yield self.transform(item) if self.transform is not None else item
