#!/usr/bin/env python3
"""Download AITW's datasets and split files from the public bucket into data/aitw/<dataset>/.

    python data/download_aitw.py                               # all five datasets + splits
    python data/download_aitw.py --datasets general single     # some datasets (+ splits)
    python data/download_aitw.py --splits-only

Source: gs://gresearch/android-in-the-wild/<dataset>/ (GZIP TFRecord shards without an
extension) and .../splits/. Uses `gcloud storage` or `gsutil` when installed, else HTTPS
via storage.googleapis.com (the JSON listing API, then one GET per file, resumable by size).
GoogleApps alone is several hundred GB; check your disk first. Exits 1 quickly, with a
clear message, when the bucket cannot be reached.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from autoui.data.aitw import DATASETS  # noqa: E402

BUCKET = "gresearch"
PREFIX = "android-in-the-wild"
API = "https://storage.googleapis.com/storage/v1/b/{bucket}/o"
MEDIA = "https://storage.googleapis.com/{bucket}/{name}"


class Unreachable(RuntimeError):
    """The bucket cannot be reached (no internet, proxy, DNS)."""


def list_objects(prefix: str, timeout: float) -> list[tuple[str, int]]:
    """(name, size) of every object under `prefix`, via the JSON API (paginated)."""
    out, token = [], None
    while True:
        query = {"prefix": prefix, "fields": "items(name,size),nextPageToken"}
        if token:
            query["pageToken"] = token
        url = API.format(bucket=BUCKET) + "?" + urllib.parse.urlencode(query)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                page = json.load(resp)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise Unreachable(f"cannot list gs://{BUCKET}/{prefix} via {url.split('?')[0]}: {exc}") from None
        out += [(item["name"], int(item["size"])) for item in page.get("items", []) if not item["name"].endswith("/")]
        token = page.get("nextPageToken")
        if not token:
            return out


def download(name: str, size: int, dest: Path, timeout: float) -> bool:
    """Fetch one object to `dest` (skipped when a file of the right size is there). True if fetched."""
    if dest.exists() and dest.stat().st_size == size:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    url = MEDIA.format(bucket=BUCKET, name=urllib.parse.quote(name))
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as f:
            shutil.copyfileobj(resp, f, length=1 << 20)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise Unreachable(f"download of {url} failed: {exc}") from None
    if part.stat().st_size != size:
        raise RuntimeError(f"{url}: got {part.stat().st_size} bytes, expected {size}")
    part.replace(dest)
    return True


def fetch_folder(folder: str, out: Path, timeout: float) -> int:
    """Copy gs://gresearch/android-in-the-wild/<folder>/ into out/<folder>/; returns files fetched."""
    tool = shutil.which("gcloud") or shutil.which("gsutil")
    if tool:
        cmd = [tool, "storage", "cp", "-r"] if tool.endswith("gcloud") else [tool, "-m", "cp", "-r"]
        subprocess.run(cmd + [f"gs://{BUCKET}/{PREFIX}/{folder}", str(out)], check=True)
        return len(list((out / folder).iterdir()))
    objects = list_objects(f"{PREFIX}/{folder}/", timeout)
    if not objects:
        raise RuntimeError(f"gs://{BUCKET}/{PREFIX}/{folder}/ is empty or does not exist")
    fetched = 0
    for i, (name, size) in enumerate(objects, 1):
        dest = out / folder / name.rsplit("/", 1)[-1]
        fetched += download(name, size, dest, timeout)
        print(f"\r{folder}: {i}/{len(objects)} files", end="", flush=True)
    print()
    return fetched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS, metavar="NAME",
                        help=f"which datasets (default: all of {', '.join(DATASETS)})")
    parser.add_argument("--out", type=Path, default=Path("data/aitw"), help="destination root (default data/aitw)")
    parser.add_argument("--splits-only", action="store_true", help="only the split files (into OUT/splits/)")
    parser.add_argument("--timeout", type=float, default=5.0, help="connect/read timeout in seconds (default 5)")
    args = parser.parse_args(argv)
    try:
        list_objects(f"{PREFIX}/splits/", args.timeout)  # probe first: fail fast without internet
        folders = ["splits"] + ([] if args.splits_only else args.datasets)
        for folder in folders:
            n = fetch_folder(folder, args.out, args.timeout)
            print(f"{folder}: {n} new files in {args.out / folder}")
    except Unreachable as exc:
        print(f"error: {exc}\nThe AITW bucket is not reachable from this machine (no internet?). "
              f"Copy the data into {args.out}/<dataset>/ by other means, or rerun where "
              f"storage.googleapis.com is reachable.", file=sys.stderr)
        return 1
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
