"""Screen preprocessing: aspect-preserving letterbox, exact coordinate mapping, normalisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from autoui.model.preprocess import Letterbox, ScreenError, ScreenPreprocessor, letterbox_for

S = 256


def _marked_screen(h: int, w: int, row: int, col: int, block: int) -> np.ndarray:
    """A black screen with one white block of block x block pixels at (row, col)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[row:row + block, col:col + block] = 255
    return img


@pytest.mark.parametrize(
    "h, w, row, col, block",
    [
        (2048, 1024, 800, 200, 8),   # tall phone-like, scale exactly 1/8
        (1024, 2048, 96, 1600, 8),   # wide browser-like
        (128, 96, 40, 10, 1),        # tiny (MiniWoB-like), upscaled x2
    ],
)
def test_a_known_pixel_maps_back_exactly(h, w, row, col, block):
    pixels, box = ScreenPreprocessor(S)(_marked_screen(h, w, row, col, block))
    assert pixels.shape == (3, S, S) and pixels.dtype == torch.float32
    # the block's centre, as a normalized screen point
    y, x = (row + block / 2) / h, (col + block / 2) / w
    iy, ix = box.screen_to_image(y, x)
    # the model-image pixel under screen_to_image's point is (one of) the brightest
    found = (int(iy * S), int(ix * S))
    assert pixels[0][found] == pixels[0].max() > 0
    # and mapping back gives the original screen point, to float precision
    assert box.image_to_screen(iy, ix) == pytest.approx((y, x), abs=1e-12)
    # pixel centres round-trip too: the found image pixel maps into the block on the screen
    sy, sx = box.image_to_screen((found[0] + 0.5) / S, (found[1] + 0.5) / S)
    assert row <= sy * h <= row + block and col <= sx * w <= col + block


def test_letterbox_geometry_for_tall_wide_and_tiny_screens():
    tall = letterbox_for(2400, 1080, 224)
    assert (tall.content_h, tall.content_w) == (224, 101) and tall.offsets == (0, 0)
    wide = letterbox_for(800, 1280, 224)
    assert (wide.content_h, wide.content_w) == (140, 224)
    tiny = letterbox_for(210, 160, 224)
    assert (tiny.content_h, tiny.content_w) == (224, 171)
    assert tiny.scale == pytest.approx(224 / 210)
    square = letterbox_for(500, 500, 224)
    assert square.screen_to_image(0.3, 0.7) == (0.3, 0.7)
    # a point in the padding lies outside the screen; clamp pulls it onto the edge
    assert tall.image_to_screen(0.5, 0.9)[1] > 1.0
    assert tall.image_to_screen(0.5, 0.9, clamp=True) == (0.5, 1.0)
    with pytest.raises(ScreenError):
        letterbox_for(0, 10, 224)


def test_padding_is_right_and_bottom_and_equals_the_normalised_mean():
    white = np.full((200, 100, 3), 255, np.uint8)
    pre = ScreenPreprocessor(64, mean=(0.5, 0.4, 0.3), std=(0.5, 0.2, 0.1))
    pixels, box = pre(white)
    assert (box.content_h, box.content_w) == (64, 32)
    expected = torch.tensor([(1 - 0.5) / 0.5, (1 - 0.4) / 0.2, (1 - 0.3) / 0.1])
    assert torch.allclose(pixels[:, :, :32], expected.view(3, 1, 1).expand(3, 64, 32), atol=1e-5)
    assert torch.count_nonzero(pixels[:, :, 32:]) == 0  # padding: the mean colour, 0 after normalising


def test_accepts_paths_pil_rgba_and_grayscale(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (120, 60, 3), dtype=np.uint8)
    path = tmp_path / "screen.png"
    Image.fromarray(rgb).save(path)
    pre = ScreenPreprocessor(32)
    reference, _ = pre(rgb)
    rgba = np.concatenate([rgb, np.full((120, 60, 1), 7, np.uint8)], axis=2)
    for screen in (path, str(path), Image.fromarray(rgb), Image.fromarray(rgba), rgba):
        assert torch.equal(pre(screen)[0], reference)
    gray, _ = pre(rgb[..., 0])
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_bad_screens_raise_screen_error(tmp_path):
    pre = ScreenPreprocessor(32)
    with pytest.raises(ScreenError, match="uint8"):
        pre(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ScreenError, match="shape"):
        pre(np.zeros((10, 10, 2), np.uint8))
    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"definitely not a png")
    with pytest.raises(ScreenError, match="cannot read"):
        pre(bad)
    with pytest.raises(ScreenError, match="unsupported"):
        pre([[1, 2, 3]])
    with pytest.raises(ValueError):
        ScreenPreprocessor(32, std=(0.0, 1.0, 1.0))


def test_batch_and_config_wiring():
    from autoui.model.config import load_preset

    config = load_preset("tiny")
    pre = ScreenPreprocessor.from_config(config)
    assert pre.image_size == config.image_size and pre.mean == config.image_mean
    screens = [np.zeros((2400, 1080, 3), np.uint8), np.zeros((210, 160, 3), np.uint8)]
    pixels, boxes = pre.batch(screens)
    assert pixels.shape == (2, 3, config.image_size, config.image_size)
    assert all(isinstance(b, Letterbox) for b in boxes)
    with pytest.raises(ScreenError):
        pre.batch([])
