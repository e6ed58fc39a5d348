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


@pytest.fixture
def train_script():
    """Load a script from train/ by file name (train/ is not a package): `train_script("grow_model.py")`."""
    import importlib.util
    from pathlib import Path

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "train" / name
        spec = importlib.util.spec_from_file_location(f"autoui_test_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def tiny_model_dir(tmp_path):
    """A saved tiny-preset model (seed 0) that learned on the area view: tmp_path / "src"."""
    import json

    import torch

    from autoui.model.config import load_preset
    from autoui.model.tokenizer import ActionTokenizer
    from autoui.model.vlm import AutoUIModel

    tok = ActionTokenizer.load()
    torch.manual_seed(0)
    src = tmp_path / "src"
    AutoUIModel(load_preset("tiny").with_tokenizer(tok)).save_pretrained(src, tokenizer=tok)
    (src / "screen.json").write_text(json.dumps({"view": "area", "scale": 1.0}))
    return src
