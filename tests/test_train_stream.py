"""The streaming training set (autoui.data.stream) on real synthetic TFRecord shards.

Covers: deterministic shuffling by seed, shard/episode splitting across processes and
DataLoader workers without duplicates or loss, resume skipping, and dataset sampling.
"""
from __future__ import annotations

import collections
import itertools
import random
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from autoui.data.stream import (AITWStream, StreamError, assign_shards, copies_of, dataset_key, episode_task,
                                keep_episode, resolve_shards, shuffle_buffer)
from autoui.data.synthetic import generate_dataset


def _key(sample) -> tuple[str, int]:
    return (sample.episode_id, sample.step_id)


def _keys_collate(batch):
    return [_key(s) for s in batch]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stream_data")
    generate_dataset(root, episodes_per_dataset=6, seed=3, shards=2)
    return root


@pytest.fixture(scope="module")
def all_keys(data) -> list[tuple[str, int]]:
    return [_key(s) for s in AITWStream(data, buffer_size=1)]


def test_every_sample_once_and_shuffle_deterministic_by_seed(data, all_keys):
    assert len(all_keys) == len(set(all_keys)) > 50
    a = [_key(s) for s in AITWStream(data, seed=7, buffer_size=32)]
    b = [_key(s) for s in AITWStream(data, seed=7, buffer_size=32)]
    c = [_key(s) for s in AITWStream(data, seed=8, buffer_size=32)]
    assert a == b
    assert a != c
    assert sorted(a) == sorted(c) == sorted(all_keys)
    assert a != all_keys  # actually shuffled


@pytest.mark.parametrize("world_size", [1, 3, 16])  # 16 > 10 shards: split by episode instead of by shard
def test_ranks_partition_the_data(data, all_keys, world_size):
    parts = [[_key(s) for s in AITWStream(data, seed=1, buffer_size=8, rank=r, world_size=world_size)]
             for r in range(world_size)]
    merged = list(itertools.chain(*parts))
    assert len(merged) == len(set(merged))  # no duplicates
    assert sorted(merged) == sorted(all_keys)  # no loss
    if world_size == 3:
        assert all(len(p) > 0 for p in parts)


def test_dataloader_workers_and_ranks_split_without_duplicates(data, all_keys):
    seen = []
    for rank in range(2):
        stream = AITWStream(data, seed=2, buffer_size=16, rank=rank, world_size=2)
        loader = DataLoader(stream, batch_size=4, num_workers=2, collate_fn=_keys_collate)
        seen += [k for batch in loader for k in batch]
    assert len(seen) == len(set(seen))
    assert sorted(seen) == sorted(all_keys)


def test_skip_batches_resumes_exactly_with_workers(data):
    def batches(skip: int) -> list[list[tuple[str, int]]]:
        stream = AITWStream(data, seed=4, buffer_size=16, repeat=True)
        stream.skip_batches(skip, 3)
        loader = DataLoader(stream, batch_size=3, num_workers=2, collate_fn=_keys_collate,
                            generator=torch.Generator().manual_seed(0))
        return list(itertools.islice(loader, 40 - skip))

    full = batches(0)
    assert batches(7) == full[7:]
    assert batches(8) == full[8:]
    # repeat=True runs past the first epoch (new shard order and buffer draws)
    assert sum(len(b) for b in full) > 100


def test_repeat_reshuffles_each_epoch(data, all_keys):
    n = len(all_keys)
    keys = [_key(s) for s in itertools.islice(AITWStream(data, seed=5, buffer_size=4, repeat=True), 2 * n)]
    first, second = keys[:n], keys[n:]
    assert len(set(keys)) == n  # both epochs cover the same samples...
    assert first != second  # ...in a different order


def test_sample_fraction_is_stable_and_validated(data):
    def count(sample) -> collections.Counter:
        return collections.Counter(s.dataset for s in AITWStream(data, buffer_size=1, sample=sample))

    full = count(None)
    half = count({"GoogleApps": 0.5})  # names are normalised: GoogleApps == google_apps
    assert 0 < half["google_apps"] < full["google_apps"]
    assert {k: v for k, v in half.items() if k != "google_apps"} == {k: v for k, v in full.items() if k != "google_apps"}
    assert half == count({"google_apps": 0.5})
    with pytest.raises(StreamError, match="shopping_mall"):
        AITWStream(data, sample={"shopping_mall": 0.1})
    with pytest.raises(StreamError, match=r"\(0, 1\]"):
        AITWStream(data, sample={"google_apps": 0.0})


def test_weights_repeat_or_thin_a_dataset_per_epoch(data):
    def count(weights) -> collections.Counter:
        return collections.Counter(s.dataset for s in AITWStream(data, buffer_size=1, weights=weights))

    full = count(None)
    double = count({"GoogleApps": 2.0})
    assert double["google_apps"] == 2 * full["google_apps"]
    assert {k: v for k, v in double.items() if k != "google_apps"} == {k: v for k, v in full.items() if k != "google_apps"}
    assert count({"google_apps": 0.5}) == count({"google_apps": 0.5})  # a pure function of (seed, epoch, episode)
    ids = {s.episode_id for s in AITWStream(data, buffer_size=1, weights={"google_apps": 0.5}, seed=1)
           if s.dataset == "google_apps"}
    all_ids = {s.episode_id for s in AITWStream(data, buffer_size=1) if s.dataset == "google_apps"}
    assert ids < all_ids
    with pytest.raises(StreamError, match="> 0"):
        AITWStream(data, weights={"google_apps": 0.0})


def test_copies_of_and_episode_task():
    ids = [f"miniwob/click-test/{i}" for i in range(20000)]
    assert sum(copies_of(i, 1.3, seed=0, epoch=0) for i in ids) in range(25600, 26400)
    assert {copies_of(i, 2.0, 0, 0) for i in ids[:50]} == {2}
    # fractions are drawn anew each epoch, but the same way on every machine
    assert [copies_of(i, 0.5, 0, 0) for i in ids[:200]] != [copies_of(i, 0.5, 0, 1) for i in ids[:200]]
    assert [copies_of(i, 0.5, 0, 1) for i in ids[:200]] == [copies_of(i, 0.5, 0, 1) for i in ids[:200]]
    assert episode_task("miniwob/click-tab-2/1000003", "miniwob") == "click-tab-2"
    assert episode_task("8473651290173", "google_apps") == "google_apps"


def test_keep_episode_fraction_and_key():
    ids = [str(10**17 + i) for i in range(20000)]
    kept = sum(keep_episode(i, 0.1) for i in ids)
    assert 1800 < kept < 2200
    assert all(keep_episode(i, 1.0) for i in ids[:10])
    assert dataset_key("Web_Shopping") == dataset_key("webshopping")


def test_episode_filter_and_accept(data, all_keys):
    some = {k[0] for k in all_keys[:10]}
    got = {_key(s) for s in AITWStream(data, episode_ids=some, buffer_size=4)}
    assert got == {k for k in all_keys if k[0] in some}
    taps = [s for s in AITWStream(data, buffer_size=1, accept=lambda s: s.target.is_tap)]
    assert taps and all(s.target.is_tap for s in taps) and len(taps) < len(all_keys)


def test_shuffle_buffer_is_bounded_permutation():
    items = list(range(1000))
    out = list(shuffle_buffer(iter(items), 10, random.Random(0)))
    assert sorted(out) == items and out != items
    # a bounded buffer can only delay an item: the first output comes from the first 11 inputs
    assert out[0] <= 10
    assert list(shuffle_buffer(iter(items), 1, random.Random(0))) == items


def test_assign_shards_and_errors(tmp_path, data):
    shards = [f"s{i}" for i in range(7)]
    dealt = [assign_shards(shards, epoch=2, seed=0, unit=u, units=3)[0] for u in range(3)]
    assert sorted(itertools.chain(*dealt)) == sorted(shards)
    assert assign_shards(shards, 0, 0, 0, 3)[0] != assign_shards(shards, 1, 0, 0, 3)[0]
    assert assign_shards(shards, 0, 0, 5, 9) == (assign_shards(shards, 0, 0, 0, 9)[0], True)
    assert len(resolve_shards(data)) == 10  # an AITW root: 5 dataset folders x 2 shards
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        AITWStream(tmp_path / "empty")
    with pytest.raises(StreamError, match="buffer_size"):
        AITWStream(data, buffer_size=0)
