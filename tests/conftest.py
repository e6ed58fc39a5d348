"""Shared test setup."""
import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests use tiny models: one thread is fastest, and steadiest on a shared 2-core CPU."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _chromium_missing() -> str:
    """Why Chromium cannot run here ("" when it can)."""
    from autoui.envs.base import BrowserNotFound
    from autoui.envs.chromium import find_chromium

    try:
        find_chromium()
    except BrowserNotFound as exc:
        return f"needs Chromium: {exc}"
    return ""


def pytest_collection_modifyitems(config, items):
    """Tests marked `browser` drive real Chromium: skip them, with the reason, where it is missing."""
    browser = [item for item in items if item.get_closest_marker("browser")]
    why = _chromium_missing() if browser else ""
    for item in browser if why else ():
        item.add_marker(pytest.mark.skip(reason=why))
