"""TFRecord framing: CRC checks, truncation, empty shards, gzip detection, interop with the `tfrecord` package."""
from __future__ import annotations

import gzip
import struct

import pytest

from autoui.data.tfrecord import (
    CorruptRecordError,
    ReadStats,
    TFRecordWriter,
    expand_paths,
    frame,
    iter_records,
    masked_crc,
)

RECORDS = [b"first", b"", b"x" * 1000, bytes(range(256))]


def _write(path, records, compress):
    with TFRecordWriter(path, compress=compress) as w:
        for r in records:
            w.write(r)


def _data(path, **kw):
    return [d for _, _, d in iter_records(path, **kw)]


@pytest.mark.parametrize("compress", [True, False])
def test_round_trip_and_positions(tmp_path, compress):
    path = tmp_path / "shard-00000-of-00001"  # no extension, as in AITW
    _write(path, RECORDS, compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    got = list(iter_records(path))
    assert [d for _, _, d in got] == RECORDS
    assert [i for i, _, _ in got] == [0, 1, 2, 3]
    positions = [p for _, p, _ in got]
    assert positions == [0, 16 + 5, 16 + 5 + 16, 16 + 5 + 16 + 16 + 1000]


def test_crc32c_check_value():
    import crc32c

    assert crc32c.crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert masked_crc(b"") == ((0 >> 15 | 0 << 17) + 0xA282EAD8) & 0xFFFFFFFF


def test_bad_data_crc_raises_and_skips(tmp_path):
    path = tmp_path / "s"
    raw = bytearray(b"".join(frame(r) for r in RECORDS))
    second_data_at = 16 + 5 + 12  # frame 2 is empty: its data CRC starts right after its header
    raw[second_data_at] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptRecordError) as err:
        _data(path)
    assert err.value.index == 1 and err.value.position == 21 and str(path) in str(err.value)
    assert "bad data CRC" in str(err.value) and "byte 21" in str(err.value)
    stats = ReadStats()
    assert _data(path, skip_corrupt=True, stats=stats) == [RECORDS[0], RECORDS[2], RECORDS[3]]
    assert (stats.skipped_records, stats.truncated_files, stats.records) == (1, 0, 3)


def test_bad_length_crc_ends_shard_in_skip_mode(tmp_path):
    path = tmp_path / "s"
    raw = bytearray(b"".join(frame(r) for r in RECORDS))
    raw[21 + 8] ^= 0x01  # the length CRC of record 1: framing cannot be trusted after it
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptRecordError, match="bad length CRC"):
        _data(path)
    stats = ReadStats()
    assert _data(path, skip_corrupt=True, stats=stats) == [RECORDS[0]]
    assert stats.truncated_files == 1


@pytest.mark.parametrize("compress", [True, False])
def test_truncated_shard(tmp_path, compress):
    full = tmp_path / "full"
    _write(full, RECORDS, compress)
    cut = tmp_path / "general-00001-of-00002"
    cut.write_bytes(full.read_bytes()[:-30])
    with pytest.raises(CorruptRecordError) as err:
        _data(cut)
    msg = str(err.value)
    assert str(cut) in msg and f"byte {err.value.position}" in msg
    if compress:  # gzip reports the cut stream while decompressing the last record
        assert "broken gzip stream" in msg and err.value.index == 3
    else:  # plain file: the last record (at byte 1053) lost its tail
        assert err.value.index == 3 and err.value.position == 1053 and "truncated record (230 of 260" in msg
    stats = ReadStats()
    got = _data(cut, skip_corrupt=True, stats=stats)
    assert got == RECORDS[: len(got)] and len(got) >= 2
    assert stats.truncated_files == 1 and stats.problems


def test_truncated_header(tmp_path):
    path = tmp_path / "s"
    path.write_bytes(frame(b"abc") + b"\x05\x00\x00")
    with pytest.raises(CorruptRecordError, match=r"truncated frame header .*record 1 at byte 19"):
        _data(path)


def test_empty_shards(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    gz_empty = tmp_path / "gz_empty"
    gz_empty.write_bytes(gzip.compress(b""))
    stats = ReadStats()
    assert _data(empty, stats=stats) == [] and _data(gz_empty, stats=stats) == []
    assert stats.files == 2 and stats.records == 0


def test_broken_gzip(tmp_path):
    path = tmp_path / "s"
    _write(path, RECORDS * 20, compress=True)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptRecordError):
        _data(path)
    stats = ReadStats()
    _data(path, skip_corrupt=True, stats=stats)
    assert stats.truncated_files + stats.skipped_records >= 1


def test_expand_paths(tmp_path):
    d = tmp_path / "general"
    for name in ("b-00001", "a-00000", ".hidden", "notes.md", "split.json"):
        (d / name).parent.mkdir(exist_ok=True)
        (d / name).write_bytes(b"")
    assert [p.name for p in expand_paths(d)] == ["a-00000", "b-00001"]
    assert [p.name for p in expand_paths(str(d / "*-0000*"))] == ["a-00000", "b-00001"]
    assert [p.name for p in expand_paths([d / "b-00001"])] == ["b-00001"]
    with pytest.raises(FileNotFoundError):
        expand_paths(tmp_path / "missing")


def test_interop_with_tfrecord_package(tmp_path):
    """Files written by the `tfrecord` package read here (CRCs verified), and ours read there."""
    from tfrecord.reader import tfrecord_loader
    from tfrecord.writer import TFRecordWriter as TheirWriter

    theirs = tmp_path / "theirs"
    w = TheirWriter(str(theirs))
    w.write({"episode_id": (b"42", "byte"), "step_id": (3, "int")})
    w.close()
    (record,) = _data(theirs)
    assert struct.unpack("<Q", theirs.read_bytes()[:8])[0] == len(record)

    ours = tmp_path / "ours"
    _write(ours, [record, record], compress=False)
    rows = list(tfrecord_loader(str(ours), None))
    assert len(rows) == 2 and rows[0]["step_id"][0] == 3 and bytes(rows[0]["episode_id"]) == b"42"
