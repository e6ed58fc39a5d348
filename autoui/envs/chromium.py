"""Finding and launching Chromium for the browser environments.

Lookup order: an explicit path, the `AUTOUI_CHROMIUM` environment variable, the system
browser (`/usr/bin/chromium` and friends), then a browser Playwright downloaded itself.
Launch flags keep a headless browser quiet and offline-safe (no sync, no component
updates, no background networking), which also makes episodes reproducible.
"""
from __future__ import annotations

import glob
import logging
import os
import shutil
import threading
from typing import Any

from autoui.envs.base import BrowserNotFound

log = logging.getLogger("autoui.envs.chromium")

ENV_VAR = "AUTOUI_CHROMIUM"
SYSTEM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome", "/snap/bin/chromium")
LAUNCH_FLAGS = (
    "--no-sandbox",  # containers and root: the sandbox cannot start there
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",  # small /dev/shm in containers crashes tabs otherwise
)
INSTALL_HINT = (
    "install Chromium: `sudo apt-get install -y chromium` (Debian/Ubuntu), or "
    "`python -m playwright install chromium`, or point AUTOUI_CHROMIUM at a Chromium/Chrome executable"
)


def _playwright_browsers() -> list[str]:
    """Executables of browsers that `playwright install` put in its cache, newest first."""
    root = os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or os.path.expanduser("~/.cache/ms-playwright")
    found = glob.glob(os.path.join(root, "chromium-*", "chrome-linux*", "chrome"))
    found += glob.glob(os.path.join(root, "chromium_headless_shell-*", "chrome-*", "headless_shell"))
    return sorted(found, reverse=True)


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_chromium(path: str | None = None) -> str:
    """Return the path of a Chromium executable, or raise `BrowserNotFound`.

    An explicit `path` (or `AUTOUI_CHROMIUM`) that does not exist is an error, not a
    reason to silently pick another browser.
    """
    for source, value in (("chromium_path argument", path), (ENV_VAR, os.environ.get(ENV_VAR))):
        if value:
            resolved = value if os.sep in value else (shutil.which(value) or value)
            if not _is_executable(resolved):
                raise BrowserNotFound(f"{source} {value!r} is not an executable file; {INSTALL_HINT}")
            return resolved
    for candidate in SYSTEM_PATHS:
        if _is_executable(candidate):
            return candidate
    for name in ("chromium", "chromium-browser"):
        which = shutil.which(name)
        if which:
            return which
    bundled = _playwright_browsers()
    if bundled:
        return bundled[0]
    raise BrowserNotFound(f"no Chromium found (looked at {', '.join(SYSTEM_PATHS)} and Playwright's cache); {INSTALL_HINT}")


def launch(playwright: Any, path: str | None = None, headless: bool = True, extra_args: tuple[str, ...] = ()) -> Any:
    """Launch Chromium through a started Playwright (`sync_playwright().start()`).

    Playwright itself gives every launch a fresh temporary `--user-data-dir` and deletes it
    on close, so no profile state leaks between runs.
    """
    executable = find_chromium(path)
    log.debug("launching %s (headless=%s)", executable, headless)
    return playwright.chromium.launch(
        executable_path=executable, headless=headless, args=[*LAUNCH_FLAGS, *extra_args]
    )


_SHARED = threading.local()


def acquire_playwright() -> Any:
    """The started sync Playwright of this thread, shared by every environment in it.

    Playwright's sync API allows one running instance per thread, so two environments in
    one thread must share it (each still launches its own browser). Pair with `release_playwright`.
    """
    state = getattr(_SHARED, "state", None)
    if state is None:
        from playwright.sync_api import sync_playwright

        state = _SHARED.state = {"pw": sync_playwright().start(), "users": 0}
    state["users"] += 1
    return state["pw"]


def release_playwright() -> None:
    """Drop one user of this thread's Playwright; the last one stops it."""
    state = getattr(_SHARED, "state", None)
    if state is None:
        return
    state["users"] -= 1
    if state["users"] <= 0:
        _SHARED.state = None
        state["pw"].stop()
