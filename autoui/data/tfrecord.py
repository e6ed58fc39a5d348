"""TFRecord framing: stream CRC-checked records out of (optionally GZIP-compressed) shards.

A TFRecord file is a sequence of frames::

    uint64 length (little endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)

AITW ships GZIP-compressed shards without a file extension, so compression is detected
from the gzip magic bytes, never from the name. The `tfrecord` PyPI package does not
verify CRCs, hence this reader. Positions in errors are byte offsets of the frame in the
*decompressed* stream (for a plain file that is the file offset).
"""
from __future__ import annotations

import glob
import gzip
import io
import logging
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import crc32c

log = logging.getLogger("autoui.data.tfrecord")

_GZIP_MAGIC = b"\x1f\x8b"
_HEADER = struct.Struct("<QI")  # length, masked crc of the length
_FOOTER = struct.Struct("<I")  # masked crc of the data
_MASK_DELTA = 0xA282EAD8
# Files next to shards that are certainly not shards (split files, notes, manifests).
_NOT_SHARDS = (".json", ".jsonl", ".md", ".txt", ".csv", ".py", ".sh", ".part")

PathLike = str | Path


class CorruptRecordError(ValueError):
    """A shard that cannot be read: bad CRC, truncated frame, broken gzip or an undecodable record.

    Attributes: `path`, `position` (byte offset of the frame in the decompressed stream),
    `index` (0-based record number in the shard) and `reason`.
    """

    def __init__(self, path: PathLike, position: int, index: int, reason: str):
        super().__init__(f"{path}: {reason} (record {index} at byte {position})")
        self.path, self.position, self.index, self.reason = str(path), position, index, reason


@dataclass
class ReadStats:
    """Counters filled while reading; pass one in to see what `skip_corrupt=True` skipped."""

    files: int = 0
    records: int = 0  # records yielded
    skipped_records: int = 0  # bad records skipped (bad data CRC, undecodable content)
    truncated_files: int = 0  # shards whose tail was unreadable (truncation, bad length CRC, broken gzip)
    episodes: int = 0
    steps: int = 0
    problems: list[str] = field(default_factory=list)  # first messages, for reports

    def note(self, error: CorruptRecordError, *, truncated: bool) -> None:
        """Count a skipped problem and keep its message (the first 100 only)."""
        if truncated:
            self.truncated_files += 1
        else:
            self.skipped_records += 1
        if len(self.problems) < 100:
            self.problems.append(str(error))
        log.warning("skipping: %s", error)


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C of `data`."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def is_gzip(path: PathLike) -> bool:
    """True when the file starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def open_shard(path: PathLike) -> BinaryIO:
    """Open a shard for reading, decompressing transparently when it is gzip."""
    if is_gzip(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def expand_paths(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """Files to read: files as given, folders as their (non-hidden, non-metadata) files sorted, globs expanded."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[Path] = []
    for p in paths:
        text = str(p)
        if any(c in text for c in "*?[") and not Path(text).exists():
            matches = sorted(glob.glob(text))
            if not matches:
                raise FileNotFoundError(f"no files match {text!r}")
            out.extend(Path(m) for m in matches if Path(m).is_file())
        elif Path(text).is_dir():
            out.extend(shard_files(Path(text)))
        elif Path(text).is_file():
            out.append(Path(text))
        else:
            raise FileNotFoundError(f"no such file or folder: {text}")
    return out


def shard_files(folder: Path) -> list[Path]:
    """The shard files directly inside `folder`, sorted by name."""
    return sorted(
        f for f in folder.iterdir()
        if f.is_file() and not f.name.startswith(".") and not f.name.lower().endswith(_NOT_SHARDS)
    )


def _read_exact(f: BinaryIO, n: int) -> bytes:
    # gzip streams may return short reads; loop until n bytes or EOF
    chunks, got = [], 0
    while got < n:
        chunk = f.read(n - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _frames(f: BinaryIO, path: PathLike) -> Iterator[tuple[int, int, bytes | CorruptRecordError]]:
    """Yield (index, position, data) per frame; a bad data CRC yields the error in place of data.

    Errors that break the framing (truncation, bad length CRC, broken gzip) are raised.
    """
    pos, index = 0, 0
    while True:
        try:
            header = _read_exact(f, _HEADER.size)
            if not header:
                return
            if len(header) < _HEADER.size:
                raise CorruptRecordError(path, pos, index, f"truncated frame header ({len(header)} of 12 bytes)")
            length, length_crc = _HEADER.unpack(header)
            if masked_crc(header[:8]) != length_crc:
                raise CorruptRecordError(path, pos, index, "bad length CRC")
            body = _read_exact(f, length + _FOOTER.size)
        except (EOFError, OSError, zlib.error) as exc:  # gzip truncated or damaged
            raise CorruptRecordError(path, pos, index, f"broken gzip stream ({exc})") from None
        if len(body) < length + _FOOTER.size:
            raise CorruptRecordError(path, pos, index, f"truncated record ({len(body)} of {length + 4} bytes)")
        data = body[:length]
        (data_crc,) = _FOOTER.unpack(body[length:])
        if masked_crc(data) != data_crc:
            yield index, pos, CorruptRecordError(path, pos, index, "bad data CRC")
        else:
            yield index, pos, data
        pos += _HEADER.size + length + _FOOTER.size
        index += 1


def iter_records(
    path: PathLike, *, skip_corrupt: bool = False, stats: ReadStats | None = None
) -> Iterator[tuple[int, int, bytes]]:
    """Yield (index, position, data) for each CRC-valid record of one shard.

    Raises CorruptRecordError on the first problem, unless `skip_corrupt`: then a record with
    a bad data CRC is skipped and a broken tail ends the shard; both are counted in `stats`.
    """
    stats = stats if stats is not None else ReadStats()
    stats.files += 1
    with open_shard(path) as f:
        frames = _frames(f, path)
        while True:
            try:
                item = next(frames, None)
            except CorruptRecordError as exc:
                if not skip_corrupt:
                    raise
                stats.note(exc, truncated=True)
                return
            if item is None:
                return
            index, pos, data = item
            if isinstance(data, CorruptRecordError):
                if not skip_corrupt:
                    raise data
                stats.note(data, truncated=False)
                continue
            stats.records += 1
            yield index, pos, data


def frame(data: bytes) -> bytes:
    """One record's bytes in TFRecord framing."""
    length = struct.pack("<Q", len(data))
    return length + _FOOTER.pack(masked_crc(length)) + data + _FOOTER.pack(masked_crc(data))


class TFRecordWriter:
    """Write framed records to `path`, GZIP-compressed when `compress` (as AITW's shards are)."""

    def __init__(self, path: PathLike, *, compress: bool = True, compresslevel: int = 6):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        raw = open(self.path, "wb")
        # mtime=0 keeps the bytes deterministic for equal content
        self._f: io.BufferedIOBase = (
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=compresslevel, mtime=0) if compress else raw
        )
        self._raw = raw
        self.count = 0

    def write(self, data: bytes) -> None:
        """Append one record."""
        self._f.write(frame(data))
        self.count += 1

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        if not self._f.closed:
            self._f.close()
        if not self._raw.closed:
            self._raw.close()

    def __enter__(self) -> "TFRecordWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
