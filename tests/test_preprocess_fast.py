"""The compiled screen path (csrc/resize.h via autoui.model.preprocess): Pillow's exact bytes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import autoui.model.preprocess as pre
from autoui.runtime import cpu_fused

try:
    EXT = cpu_fused.load_extension()  # registers the fast path when it matches this Pillow
except RuntimeError as exc:
    pytest.skip(f"fused CPU kernel unavailable: {exc}", allow_module_level=True)


@pytest.fixture
def fast():
    assert pre.register_fast_pixels(EXT.screen_pixels)  # matches this Pillow's bytes on the probes
    yield pre._FAST_PIXELS
    pre.register_fast_pixels(EXT.screen_pixels)


def _both(prep: pre.ScreenPreprocessor, screen, fast):
    pre.register_fast_pixels(None)
    slow = prep(screen)
    pre._FAST_PIXELS = fast
    return slow, prep(screen)


def _screen(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Blocky content (UI-like edges) with noise, so every pass and rounding matters."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (h // 7 + 1, w // 7 + 1, channels), dtype=np.uint8)
    img = np.repeat(np.repeat(blocks, 7, 0), 7, 1)[:h, :w]
    return np.ascontiguousarray(np.clip(img.astype(int) + rng.integers(-9, 10, img.shape), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("h,w", [(160, 160), (210, 160), (160, 210), (800, 1280), (1280, 800), (300, 200),
                                 (224, 100), (37, 51), (224, 224), (224, 97), (500, 499), (1, 7), (650, 224)])
@pytest.mark.parametrize("size", [224, 96])
def test_fast_screens_equal_pillows_bytes(fast, h, w, size):
    """Upscales, shrinks under 3x (vertical pass first when the height shrinks most, as Pillow
    11+ does), one-axis resizes, no resize, and one-pixel sides."""
    prep = pre.ScreenPreprocessor(size)
    screen = _screen(h, w, seed=h * w)
    (slow, box_slow), (quick, box_quick) = _both(prep, screen, fast)
    preshrink = h >= 6 * box_slow.content_h or w >= 6 * box_slow.content_w  # Pillow's reduce() first: its own path
    assert (prep._fast(screen) is None) == preshrink
    assert box_slow == box_quick
    assert torch.equal(slow, quick)


def test_rgba_pil_and_strided_screens_take_the_fast_path_too(fast):
    prep = pre.ScreenPreprocessor(224)
    rgba = _screen(210, 160, channels=4)
    for screen in (rgba, Image.fromarray(rgba[..., :3]), rgba[:, ::-1, :3], rgba[..., :3].copy()):
        (slow, _), (quick, _) = _both(prep, screen, fast)
        assert prep._fast(screen) is not None
        assert torch.equal(slow, quick)


def test_screens_pillow_would_preshrink_stay_with_pillow(fast):
    prep = pre.ScreenPreprocessor(224)
    phone = _screen(2400, 1080)  # shrinks ~10x: Pillow reduces by an integer factor first
    assert prep._fast(phone) is None
    (slow, _), (quick, _) = _both(prep, phone, fast)
    assert torch.equal(slow, quick)
    assert prep._fast(_screen(40, 40, channels=1)) is None  # greyscale: Pillow converts, no fast path


def test_a_resize_that_differs_from_pillow_is_refused():
    def off_by_one(screen, h, w, size, affine, vertical_first):
        return EXT.screen_pixels(screen, h, w, size, affine, vertical_first) + affine[0, 0]  # one level up

    try:
        assert not pre.register_fast_pixels(off_by_one)
        assert pre._FAST_PIXELS is None  # Pillow alone
    finally:
        assert pre.register_fast_pixels(EXT.screen_pixels)


def test_bad_screens_raise_clearly():
    affine = torch.stack(pre.ScreenPreprocessor(32)._affine())
    with pytest.raises(RuntimeError, match="uint8"):
        EXT.screen_pixels(torch.zeros(8, 8, 3), 8, 8, 32, affine, False)
    with pytest.raises(RuntimeError, match="fit the square"):
        EXT.screen_pixels(torch.zeros(8, 8, 3, dtype=torch.uint8), 40, 8, 32, affine, False)
    with pytest.raises(RuntimeError, match="affine"):
        EXT.screen_pixels(torch.zeros(8, 8, 3, dtype=torch.uint8), 8, 8, 32, affine[:1], False)


def test_other_normalisations_round_as_torch_does(fast):
    """ImageNet's mean / std: the scale and shift are not round numbers, so a fused multiply-add
    would differ from PyTorch's product-then-sum in the last bit somewhere."""
    prep = pre.ScreenPreprocessor(224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    for h, w in [(160, 160), (210, 160), (333, 250)]:
        (slow, _), (quick, _) = _both(prep, _screen(h, w, seed=w), fast)
        assert torch.equal(slow, quick)
