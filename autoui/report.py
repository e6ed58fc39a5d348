"""HTML trajectory reports: every step's screenshot with the action drawn on it.

People would rather look than read: a report shows, per episode, the goal, whether it
succeeded, and each screenshot with the tap (a ring), the swipe (an arrow) or the typed
text drawn where the agent acted. The file is self-contained (images inlined as PNG),
so it can be opened anywhere or attached to an issue.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from autoui.actions import Action, format_compact

_RING = (255, 40, 40)
_ARROW = (40, 120, 255)


@dataclass
class ReportStep:
    image: np.ndarray  # uint8 [H, W, 3], the screen the action was chosen on
    action: Action
    note: str = ""  # e.g. the model's raw text, timings


@dataclass
class ReportEpisode:
    title: str
    goal: str
    success: bool | None
    steps: list[ReportStep] = field(default_factory=list)
    note: str = ""


def draw_action(image: np.ndarray, action: Action, scale: int = 2) -> Image.Image:
    """Return the screenshot (upscaled by `scale` for tiny screens) with `action` drawn on it."""
    img = Image.fromarray(np.ascontiguousarray(image[..., :3])).convert("RGB")
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    r = max(4, min(img.size) // 30)
    if action.is_tap:
        x, y = action.touch_pixels(img.width, img.height)
        draw.ellipse((x - r, y - r, x + r, y + r), outline=_RING, width=max(2, r // 3))
        draw.line((x - r // 2, y, x + r // 2, y), fill=_RING, width=1)
        draw.line((x, y - r // 2, x, y + r // 2), fill=_RING, width=1)
    elif action.is_swipe:
        x0, y0 = action.touch_pixels(img.width, img.height)
        x1, y1 = action.lift_pixels(img.width, img.height)
        draw.line((x0, y0, x1, y1), fill=_ARROW, width=max(2, r // 3))
        draw.ellipse((x1 - r // 2, y1 - r // 2, x1 + r // 2, y1 + r // 2), fill=_ARROW)
    else:
        label = format_compact(action)[:40]
        draw.rectangle((0, img.height - 14, img.width, img.height), fill=(0, 0, 0))
        draw.text((3, img.height - 13), label, fill=(255, 255, 0))
    return img


def _png_data_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _episode_html(ep: ReportEpisode) -> str:
    status = {True: ("success", "ok"), False: ("failure", "bad"), None: ("unknown", "")}[ep.success]
    cells = []
    for i, step in enumerate(ep.steps):
        uri = _png_data_uri(draw_action(step.image, step.action))
        caption = html.escape(format_compact(step.action))
        note = f"<div class='note'>{html.escape(step.note)}</div>" if step.note else ""
        cells.append(f"<figure><img src='{uri}' alt='step {i}'><figcaption>{i}: <code>{caption}</code>"
                     f"</figcaption>{note}</figure>")
    note = f"<p class='note'>{html.escape(ep.note)}</p>" if ep.note else ""
    return (f"<section><h2>{html.escape(ep.title)} <span class='{status[1]}'>{status[0]}</span></h2>"
            f"<p class='goal'>Goal: {html.escape(ep.goal)}</p>{note}<div class='steps'>{''.join(cells)}</div>"
            f"</section>")


_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.8em;margin-bottom:1em}
.steps{display:flex;flex-wrap:wrap;gap:.6em}figure{margin:0}figcaption{font-size:.85em}
img{border:1px solid #ccc;image-rendering:pixelated}.ok{color:#080}.bad{color:#b00}
.goal{font-weight:600}.note{color:#666;font-size:.8em;max-width:22em;word-break:break-all}"""


def write_report(path: str | Path, episodes: list[ReportEpisode], title: str = "autoui trajectories") -> Path:
    """Write a self-contained HTML report of `episodes` to `path` and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_ok = sum(1 for e in episodes if e.success)
    body = "".join(_episode_html(e) for e in episodes)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>{n_ok}/{len(episodes)} episodes succeeded.</p>{body}</body></html>")
    path.write_text(page, encoding="utf-8")
    return path
