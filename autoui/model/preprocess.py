"""Screens of any shape -> the model's square, normalised pixel tensor.

Phones are tall (1080x2400), browsers wide (1280x800), MiniWoB tiny (160x210). The
screen is resized keeping its aspect ratio so that its long side is `image_size`, placed
at the TOP-LEFT of a square canvas, and the rest (right or bottom) is padding whose value
is the normalisation mean (0 after normalising).

What a coordinate means: the model reads and writes normalized (y, x) of the ORIGINAL
screen (AITW's convention: (0, 0) top-left, (1, 1) bottom-right of the screenshot), never
of the padded square. Because the content starts at the top-left, the two differ only by
a per-axis factor: y_image = y_screen * content_h / image_size (same for x), which
`Letterbox.screen_to_image` / `image_to_screen` apply.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
_REDUCING_GAP = 3.0  # PIL first shrinks by an integer factor when a side shrinks by this much or more

# screen_pixels(uint8 [H, W, 3], content_h, content_w, size, affine [2, 3], vertical_first) ->
# [3, S, S]: a compiled equivalent of the bilinear path below, bit for bit, and the installed
# Pillow's pass order (see `register_fast_pixels`); None: Pillow only
_FAST_PIXELS: Callable[..., torch.Tensor] | None = None
_PASS_ORDERS = {  # (H, W, content_h, content_w) -> vertical pass first?
    "horizontal-first": lambda h, w, ch, cw: False,  # Pillow before 11
    "shrink-tall-vertical-first": lambda h, w, ch, cw: 0 < h - ch and h - ch > (w - cw) * 2,  # Pillow 11+
}
_PASS_ORDER = _PASS_ORDERS["horizontal-first"]
# screens (H, W, square size) whose resized bytes tell the pass orders apart, or catch a mismatch
_PROBES = ((224, 100, 96), (100, 224, 96), (160, 160, 224), (210, 160, 224), (800, 1280, 224), (37, 51, 224),
           (300, 200, 224), (1000, 200, 224))


def register_fast_pixels(fn: Callable[..., torch.Tensor] | None) -> bool:
    """Use `fn` (see `_FAST_PIXELS`) for bilinear screens from now on in this process, once it
    gives Pillow's exact bytes on probe screens under one of the pass orders Pillow has used;
    None (or no order matching) leaves Pillow alone in charge. Returns whether `fn` is in use."""
    global _FAST_PIXELS, _PASS_ORDER
    _FAST_PIXELS = None
    if fn is None:
        return False
    rng = np.random.default_rng(0)
    probes = [(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), size) for h, w, size in _PROBES]
    expected = [ScreenPreprocessor(size)(screen)[0] for screen, size in probes]  # Pillow's
    for order in _PASS_ORDERS.values():
        def run(screen: np.ndarray, size: int) -> torch.Tensor:
            box = letterbox_for(*screen.shape[:2], size)
            return fn(torch.from_numpy(screen), box.content_h, box.content_w, size,
                      torch.stack(ScreenPreprocessor(size)._affine()), order(*screen.shape[:2], box.content_h, box.content_w))
        if all(torch.equal(run(screen, size), want) for (screen, size), want in zip(probes, expected)):
            _FAST_PIXELS, _PASS_ORDER = fn, order
            return True
    return False


class ScreenError(ValueError):
    """An input that is not a usable screenshot (bad shape, dtype, unreadable file)."""


@dataclass(frozen=True)
class Letterbox:
    """Where a screen landed on the square model image (content at top-left, no offsets)."""

    screen_h: int
    screen_w: int
    image_size: int
    content_h: int
    content_w: int

    @property
    def scale(self) -> float:
        """Model-image pixels per screen pixel (the same on both axes, up to rounding)."""
        return self.image_size / max(self.screen_h, self.screen_w)

    @property
    def offsets(self) -> tuple[int, int]:
        """(top, left) of the content on the square: always (0, 0), padding is right/bottom."""
        return (0, 0)

    def screen_to_image(self, y: float, x: float) -> tuple[float, float]:
        """Normalized screen (y, x) -> normalized (y, x) on the padded square image."""
        return (y * self.content_h / self.image_size, x * self.content_w / self.image_size)

    def image_to_screen(self, y: float, x: float, clamp: bool = False) -> tuple[float, float]:
        """Normalized square-image (y, x) -> normalized screen (y, x).

        Points in the padding map outside [0, 1]; `clamp=True` pulls them onto the screen edge.
        """
        sy, sx = y * self.image_size / self.content_h, x * self.image_size / self.content_w
        if clamp:
            sy, sx = min(max(sy, 0.0), 1.0), min(max(sx, 0.0), 1.0)
        return (sy, sx)


def letterbox_for(height: int, width: int, image_size: int) -> Letterbox:
    """The Letterbox of a height x width screen on an image_size square."""
    if height <= 0 or width <= 0:
        raise ScreenError(f"screen must have a positive size, got {height}x{width}")
    scale = image_size / max(height, width)
    # the long side is exactly image_size; the short side rounds to the nearest pixel (>= 1)
    content_h = image_size if height >= width else max(1, round(height * scale))
    content_w = image_size if width >= height else max(1, round(width * scale))
    return Letterbox(height, width, image_size, content_h, content_w)


def to_rgb_image(screen: Any) -> Image.Image:
    """A PIL RGB image from a PIL image, a path, or a uint8 array [H, W], [H, W, 3] or [H, W, 4]."""
    if isinstance(screen, (str, Path)):
        try:
            with Image.open(screen) as img:
                return img.convert("RGB")
        except OSError as exc:
            raise ScreenError(f"cannot read image {screen}: {exc}") from exc
    if isinstance(screen, Image.Image):
        return screen if screen.mode == "RGB" else screen.convert("RGB")
    if isinstance(screen, np.ndarray):
        if screen.dtype != np.uint8:
            raise ScreenError(f"screen array must be uint8, got {screen.dtype}")
        if screen.ndim == 3 and screen.shape[2] in (3, 4):
            # alpha is dropped, not blended: screenshots are opaque
            return Image.fromarray(np.ascontiguousarray(screen[..., :3]), mode="RGB")
        if screen.ndim == 2 or (screen.ndim == 3 and screen.shape[2] == 1):
            return Image.fromarray(np.ascontiguousarray(screen.reshape(screen.shape[:2]))).convert("RGB")
        raise ScreenError(f"screen array must be [H, W], [H, W, 3] or [H, W, 4], got shape {screen.shape}")
    raise ScreenError(f"unsupported screen type {type(screen).__name__}; pass a path, PIL image or uint8 array")


@dataclass(frozen=True)
class ScreenPreprocessor:
    """Aspect-preserving resize + top-left placement + normalisation to [3, S, S] float32."""

    image_size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resample: str = "bilinear"

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or self.image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean/std must be 3 values with std > 0, got {self.mean} / {self.std}")
        if self.resample not in _RESAMPLE:
            raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, got {self.resample!r}")

    @classmethod
    def from_config(cls, config: Any) -> "ScreenPreprocessor":
        """From a `ModelConfig` (anything with image_size, image_mean and image_std)."""
        try:
            return cls(int(config.image_size), tuple(config.image_mean), tuple(config.image_std))
        except AttributeError as exc:
            raise ValueError(f"config lacks image settings ({exc}); need image_size, image_mean, image_std") from None

    def __call__(self, screen: Any) -> tuple[torch.Tensor, Letterbox]:
        """One screen -> (pixel tensor [3, S, S] float32, its Letterbox)."""
        fast = self._fast(screen)
        if fast is not None:
            return fast
        img = to_rgb_image(screen)
        box = letterbox_for(img.height, img.width, self.image_size)
        if (img.height, img.width) != (box.content_h, box.content_w):
            # reducing_gap: PIL first shrinks by an integer factor (fast box filter), then resamples
            img = img.resize((box.content_w, box.content_h), _RESAMPLE[self.resample], reducing_gap=_REDUCING_GAP)
        a, b = self._affine()
        # padding = 0 after normalisation, i.e. the mean colour: no artificial edge signal
        pixels = torch.zeros(3, self.image_size, self.image_size)  # [3, S, S]
        content = pixels[:, : box.content_h, : box.content_w]
        content.copy_(torch.from_numpy(np.array(img)).permute(2, 0, 1))  # uint8 -> float32, [3, h, w]
        content.mul_(a[:, None, None]).add_(b[:, None, None])  # in torch: vectorised
        return pixels, box

    def _affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) [3] of the per-channel map (v / 255 - mean) / std == v * a + b, fused into one map."""
        a = 1.0 / (255.0 * np.asarray(self.std, dtype=np.float32))
        b = -np.asarray(self.mean, dtype=np.float32) / np.asarray(self.std, dtype=np.float32)
        return torch.from_numpy(a), torch.from_numpy(b)

    def _fast(self, screen: Any) -> tuple[torch.Tensor, Letterbox] | None:
        """The compiled path's (pixels, box) for an RGB(A) uint8 array or RGB image it reproduces
        exactly (bilinear, no integer pre-shrink), else None."""
        if _FAST_PIXELS is None or self.resample != "bilinear":
            return None
        if isinstance(screen, Image.Image) and screen.mode == "RGB":
            screen = np.array(screen)
        if not (isinstance(screen, np.ndarray) and screen.dtype == np.uint8 and screen.ndim == 3
                and screen.shape[2] in (3, 4) and min(screen.shape[:2]) > 0):
            return None
        h, w = screen.shape[:2]
        box = letterbox_for(h, w, self.image_size)
        if int(w / box.content_w / _REDUCING_GAP) > 1 or int(h / box.content_h / _REDUCING_GAP) > 1:
            return None  # PIL would pre-shrink (Image.reduce) first
        if screen.shape[2] == 4 or not (screen.flags.c_contiguous and screen.flags.writeable):
            screen = np.array(screen[..., :3], order="C")  # alpha dropped, as `to_rgb_image` does
        if self.__dict__.get("_ab") is None:  # [2, 3]: the per-channel scale and shift, once
            object.__setattr__(self, "_ab", torch.stack(self._affine()).contiguous())
        pixels = _FAST_PIXELS(torch.from_numpy(screen), box.content_h, box.content_w, self.image_size,
                              self.__dict__["_ab"], _PASS_ORDER(h, w, box.content_h, box.content_w))
        return pixels, box

    def batch(self, screens: Sequence[Any]) -> tuple[torch.Tensor, list[Letterbox]]:
        """Many screens -> ([B, 3, S, S], letterboxes)."""
        if not screens:
            raise ScreenError("batch needs at least one screen")
        out = [self(s) for s in screens]
        return torch.stack([p for p, _ in out]), [b for _, b in out]
