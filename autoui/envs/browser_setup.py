"""Make sure a Chromium the browser environments can drive is installed.

`python -m autoui.envs.browser_setup --install` (run by `make install`): exits 0 when
Chromium is present; otherwise installs Debian's `chromium` when running as root, or
prints the exact command to run and exits 1. Without `--install` it only checks.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from autoui.envs.base import BrowserNotFound
from autoui.envs.chromium import find_chromium

APT_COMMAND = "apt-get update && apt-get install -y chromium"


def check() -> str | None:
    """The Chromium path the environments would use, or None when there is none."""
    try:
        return find_chromium()
    except BrowserNotFound:
        return None


def main(argv: list[str] | None = None) -> int:
    """Check for (and with --install, install) Chromium. Returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m autoui.envs.browser_setup", description=__doc__)
    parser.add_argument("--install", action="store_true", help="install Chromium with apt when missing and root")
    args = parser.parse_args(argv)
    found = check()
    if found:
        print(f"chromium: {found}")
        return 0
    if not args.install:
        print(f"chromium: not found; install it with: sudo sh -c '{APT_COMMAND}'")
        return 1
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        print(f"chromium: not found; running: {APT_COMMAND}")
        result = subprocess.run(["sh", "-c", APT_COMMAND], check=False)
        found = check()
        if result.returncode == 0 and found:
            print(f"chromium: {found}")
            return 0
        print(f"chromium: install failed (exit {result.returncode})", file=sys.stderr)
        return 1
    print("chromium: not found and not root; run this, then `make install` again:")
    print(f"  sudo sh -c '{APT_COMMAND}'")
    print("  (or: .venv/bin/python -m playwright install chromium, or set AUTOUI_CHROMIUM=/path/to/chrome)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
