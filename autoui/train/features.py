"""Vision-feature cache for training with a frozen vision tower (Auto-UI's recipe).

With the tower frozen, a screenshot's features never change, so they are computed once
and reused every epoch. Keys are (episode_id, step_id); values are the tower's output
(before the trainable projector) as computed the first time, kept on the CPU in an LRU
dict and, optionally, as files under a directory named by a fingerprint of the tower's
weights and config (a cache made by other weights is never read).

`cached_vision(model, cache, keys)` swaps `model.vision` for a caching stand-in for the
duration of one forward call, so the model's own `forward` (and its loss) is used
unchanged; the real tower is back in place before anything is saved.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger("autoui.train.features")

Key = tuple[str, int]


def tower_fingerprint(tower: nn.Module, extra: object = None) -> str:
    """A short hex digest of the tower's weights (and `extra`, e.g. its config)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(json.dumps(repr(extra)).encode())
    for name, tensor in sorted(tower.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class FeatureCache:
    """LRU in-memory (and optional on-disk) store of per-screenshot vision features."""

    def __init__(self, max_items: int = 20000, disk_dir: str | Path | None = None, fingerprint: str = ""):
        """`disk_dir`: also keep features as files under `disk_dir/fingerprint` (see `tower_fingerprint`)."""
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        if disk_dir is not None and not fingerprint:
            raise ValueError("a disk cache needs the tower's fingerprint (features of other weights must not be reused)")
        self.max_items = max_items
        self.disk_dir = Path(disk_dir) / fingerprint if disk_dir is not None else None
        self._mem: OrderedDict[Key, torch.Tensor] = OrderedDict()
        self.hits = self.misses = 0

    def _path(self, key: Key) -> Path:
        assert self.disk_dir is not None
        digest = hashlib.blake2b(f"{key[0]}\0{key[1]}".encode(), digest_size=10).hexdigest()
        return self.disk_dir / digest[:2] / f"{digest}.pt"

    def get(self, key: Key) -> torch.Tensor | None:
        """The cached features [N, Dv] for `key`, or None."""
        t = self._mem.get(key)
        if t is not None:
            self._mem.move_to_end(key)
            return t
        if self.disk_dir is not None:
            path = self._path(key)
            if path.is_file():
                t = torch.load(path, map_location="cpu", weights_only=True)
                self._remember(key, t)
                return t
        return None

    def put(self, key: Key, features: torch.Tensor) -> None:
        """Store features [N, Dv] (copied to the CPU)."""
        t = features.detach().to("cpu").clone()
        self._remember(key, t)
        if self.disk_dir is not None:
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(t, tmp)
            tmp.replace(path)  # atomic: a crash never leaves a half-written feature file

    def _remember(self, key: Key, t: torch.Tensor) -> None:
        self._mem[key] = t
        self._mem.move_to_end(key)
        while len(self._mem) > self.max_items:
            self._mem.popitem(last=False)

    def __len__(self) -> int:
        return len(self._mem)

    def features(self, tower: nn.Module, pixel_values: torch.Tensor, keys: Sequence[Key],
                 num_layers: int | None = None) -> torch.Tensor:
        """Tower output [B, N, Dv] for a batch, computing (without grad) only the missing rows."""
        if len(keys) != pixel_values.shape[0]:
            raise ValueError(f"{len(keys)} cache keys for {pixel_values.shape[0]} images")
        keys = [tuple(k) for k in keys]
        found = [self.get(k) for k in keys]
        first: dict[Key, int] = {}  # a screenshot twice in one batch is computed once
        for i, t in enumerate(found):
            if t is None:
                first.setdefault(keys[i], i)
        self.hits += len(keys) - len(first)
        self.misses += len(first)
        if first:
            with torch.no_grad():
                fresh = tower(pixel_values[list(first.values())], num_layers=num_layers)  # [M, N, Dv]
            for key, t in zip(first, fresh):
                self.put(key, t)
            # the stored copies: hits and misses read exactly the same values
            found = [t if t is not None else self.get(k) for k, t in zip(keys, found)]
        return torch.stack([t.to(pixel_values.device) for t in found])  # [B, N, Dv]


class _CachedTower(nn.Module):
    """Stands in for the vision encoder: same call signature, answers from the cache."""

    def __init__(self, tower: nn.Module, cache: FeatureCache, keys: Sequence[Key]):
        super().__init__()
        object.__setattr__(self, "_tower", tower)  # not a submodule: adds no parameters or state
        self._cache, self._keys = cache, list(keys)

    def forward(self, pixel_values: torch.Tensor, num_layers: int | None = None) -> torch.Tensor:
        return self._cache.features(self._tower, pixel_values, self._keys, num_layers)


@contextlib.contextmanager
def cached_vision(model: nn.Module, cache: FeatureCache, keys: Sequence[Key]) -> Iterator[None]:
    """Within the block, `model.vision(...)` answers from `cache` for the images keyed by `keys`."""
    tower = model.vision
    model._modules["vision"] = _CachedTower(tower, cache, keys)
    try:
        yield
    finally:
        model._modules["vision"] = tower
