"""Reading pages: MiniWoB-sized screens of random words, rendered by Chromium, as demonstrations.

Why: a task that picks its target by a word (a link, a button, an option, a tree item)
shows the model that word once per episode, so a few thousand demonstrations teach a
fixed vocabulary, not reading. These pages show many more words: each is a 160 x 210
CSS-pixel screen styled like MiniWoB++ (yellow goal banner, Arial 10 px) holding random
words as links in a paragraph, buttons in a row, labelled squares, options or a list. The
goal names one of them; the demonstration taps its centre, then says done on the same
screen. Chromium renders them, so the text looks like the tasks' text, and the pages are
annotated like every other demonstration (`autoui.envs.dom`), so drills and the box-text
loss read all their words, not just the target.

    autoui collect reading --episodes 6000 --seed 0 --out data/reading

Episode i is a pure function of seed + i. Shards of `shard_size` episodes go to
OUT/reading/reading-<first>-<last>; a finished shard is skipped by a rerun.
"""
from __future__ import annotations

import html
import io
import logging
import random
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from autoui.actions import Action
from autoui.envs.miniwob import BANNER_HEIGHT, check_view
from autoui.envs.workers import job_results, worker_resource

log = logging.getLogger("autoui.envs.reading_pages")

DATASET = "reading"
WIDTH, HEIGHT = 160, 210  # MiniWoB++'s screen, CSS px
LAYOUTS = ("links", "buttons", "squares", "options", "list")

_LATIN = (
    "alia amet ante arcu augue bibendum blandit cras cursus dapibus diam dictum donec dui egestas eget elit "
    "enim erat eros etiam euismod fames felis fermentum feugiat fusce gravida habitant iaculis integer ipsum "
    "justo lacus laoreet lectus leo libero ligula lorem luctus magna massa mattis mauris metus mi morbi nam "
    "nec neque nibh nisi nisl non nulla nunc odio orci ornare pede pellentesque pharetra porta porttitor "
    "pretium proin purus quam quis risus rutrum sagittis sapien sed sem semper sit sodales tellus tempor "
    "tempus tincidunt tortor turpis ullamcorper urna ut varius vel velit vitae viverra volutpat"
).split()
_ONSETS = "b c d f g h j k l m n p r s t v w z br ch cl dr gr kr sh st th tr".split()
_VOWELS = "a e i o u a e i o ai ea ie ou".split()
_CODAS = ["", "", "", "n", "r", "s", "l", "th", "nd", "ck", "sha", "na", "ra", "tte"]


def _latin(rng: random.Random) -> str:
    return rng.choice(_LATIN)


def _name(rng: random.Random) -> str:
    """A made-up first name: two or three syllables, capitalised."""
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.randint(1, 2))]
    return ("".join(parts) + rng.choice(_CODAS)).capitalize()


def _code(rng: random.Random) -> str:
    """A random string of letters and digits (MiniWoB's option labels look like this)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(2, 5)))


def _upper(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.randint(2, 5)))


WORDS: dict[str, Callable[[random.Random], str]] = {"latin": _latin, "name": _name, "code": _code, "upper": _upper}


def distinct_words(rng: random.Random, n: int, kind: str | None = None) -> list[str]:
    """`n` different words (case-insensitively) of one kind, drawn at random when `kind` is None."""
    make = WORDS[kind or rng.choice(sorted(WORDS))]
    out: dict[str, str] = {}
    while len(out) < n:
        word = make(rng)
        out.setdefault(word.lower(), word)
    return list(out.values())


@dataclass(frozen=True)
class Page:
    """One screen: its HTML, the goal shown in the banner, and the target word."""

    html: str
    goal: str
    target: str


_STYLE = (
    "body{background:#555;font-family:Arial;font-size:14px;margin:0;padding:0}"
    f"#wrap{{height:{HEIGHT}px;width:{WIDTH}px;background:#fff;overflow:hidden}}"
    "#query{background:#FF0;font-size:10px;height:44px;padding:3px}"
    "#area{font-size:10px;padding:2px;position:relative;height:150px}"
    ".lnk{color:#00e;text-decoration:underline;white-space:nowrap;cursor:pointer}"
)


def _tag(word: str, i: int, tag: str, attrs: str = "") -> str:
    """An element holding `word`, marked as word `i` (the renderer finds the target by it)."""
    return f'<{tag} data-w="{i}"{attrs}>{html.escape(word)}</{tag}>'


def _links(rng: random.Random, words: list[str]) -> tuple[str, str]:
    filler = [_latin(rng) for _ in range(rng.randint(8, 18))]
    parts = [_tag(w, i, "span", ' class="lnk"') for i, w in enumerate(words)] + [html.escape(f) for f in filler]
    rng.shuffle(parts)
    return "<p style='margin:2px 0'>" + " ".join(parts) + "</p>", 'Click on the link "{}".'


def _buttons(rng: random.Random, words: list[str]) -> tuple[str, str]:
    text = " ".join(_latin(rng) for _ in range(rng.randint(2, 8)))
    buttons = "".join(_tag(w, i, "button", " style='margin:1px'") for i, w in enumerate(words))
    return f"<div>{html.escape(text)}</div><div style='margin-top:{rng.randint(2, 30)}px'>{buttons}</div>", \
        'Click on the "{}" button.'


def _squares(rng: random.Random, words: list[str]) -> tuple[str, str]:
    cells = rng.sample([(r, c) for r in range(3) for c in range(3)], len(words))
    out = []
    for i, (w, (r, c)) in enumerate(zip(words, cells)):
        top, left = r * 50 + rng.randint(0, 8), c * 50 + rng.randint(0, 8)
        style = f"position:absolute;top:{top}px;left:{left}px;min-width:40px;height:40px;padding:0 2px"
        out.append(_tag(w, i, "button", f" style='{style}'"))
    return "".join(out), "Click button {}."


def _options(rng: random.Random, words: list[str]) -> tuple[str, str]:
    kind = rng.choice(["radio", "checkbox"])
    rows = "".join(f"<div><input type='{kind}'>{_tag(w, i, 'span')}</div>" for i, w in enumerate(words))
    return rows, 'Click on the text "{}".'


def _list(rng: random.Random, words: list[str]) -> tuple[str, str]:
    rows = "".join(f"<div style='margin:4px 0 4px {rng.choice([4, 20, 36])}px'>{_tag(w, i, 'span')}</div>"
                   for i, w in enumerate(words))
    return rows, 'Click on the text "{}".'


_LAYOUT_BUILDERS = {"links": (_links, 2, 5), "buttons": (_buttons, 2, 5), "squares": (_squares, 2, 4),
                    "options": (_options, 3, 6), "list": (_list, 3, 8)}


def make_page(rng: random.Random, layout: str | None = None) -> Page:
    """A random page of one layout (drawn when None) and a target among its words."""
    layout = layout or rng.choice(LAYOUTS)
    build, lo, hi = _LAYOUT_BUILDERS[layout]
    kind = "upper" if layout == "squares" and rng.random() < 0.5 else None
    words = distinct_words(rng, rng.randint(lo, hi), kind)
    body, goal_format = build(rng, words)
    target = rng.randrange(len(words))
    goal = goal_format.format(words[target])
    page = (f"<html><head><style>{_STYLE}</style></head><body><div id='wrap'><div id='query'>{html.escape(goal)}"
            f"</div><div id='area'>{body}</div></div></body></html>")
    return Page(page.replace(f'data-w="{target}"', 'data-w="target"', 1), goal, words[target])


# -- rendering -------------------------------------------------------------------------------
_TARGET_BOX_JS = """() => { const r = document.querySelector('[data-w="target"]').getBoundingClientRect();
  return [r.top, r.left, r.height, r.width]; }"""


class ReadingPageError(RuntimeError):
    """A page whose target did not render inside the screen (the episode is skipped)."""


class PageRenderer:
    """One Chromium page at MiniWoB's size that turns `Page`s into AITW steps.

    `view="area"` records only the 160x160 play area below the banner, as MiniWoB's area view
    does, so the pages reach an area-view model at the scale of its tasks.
    """

    def __init__(self, chromium_path: str | None = None, view: str = "task"):
        from autoui.envs.chromium import acquire_playwright, launch

        check_view(view)
        self.view = view
        self._pw = acquire_playwright()
        try:
            self._browser = launch(self._pw, chromium_path)
            self._page = self._browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        from autoui.envs.chromium import release_playwright

        browser, self._browser = getattr(self, "_browser", None), None
        if browser is not None:
            browser.close()
        if self._pw is not None:
            self._pw = None
            release_playwright()

    def __enter__(self) -> "PageRenderer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def steps(self, page: Page, episode_id: str) -> list[Any]:
        """The episode of `page`: a tap at the target's centre, then done on the same screen."""
        from PIL import Image

        from autoui.data.aitw import Step
        from autoui.envs.dom import annotations, list_elements

        self._page.set_content(page.html)
        top, left, h, w = self._page.evaluate(_TARGET_BOX_JS)
        y0 = BANNER_HEIGHT if self.view == "area" else 0
        y, x = (top + h / 2 - y0) / (HEIGHT - y0), (left + w / 2) / WIDTH
        if not (0 < y < 1 and 0 < x < 1) or h <= 0 or w <= 0:
            raise ReadingPageError(f"{episode_id}: the target rendered off screen at ({y:.2f}, {x:.2f})")
        png = self._page.screenshot(clip={"x": 0, "y": y0, "width": WIDTH, "height": HEIGHT - y0})
        image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        region = (0, y0, WIDTH, HEIGHT - y0)
        boxes, texts, types = annotations(list_elements(self._page, region, leaves_only=True))
        positions = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        return [Step(episode_id=episode_id, step_id=i, episode_length=2, goal=page.goal, image=image, action=action,
                     ui_positions=positions, ui_text=list(texts), ui_types=list(types), device_type="chromium",
                     current_activity=DATASET, dataset=DATASET)
                for i, action in enumerate((Action.tap(y, x), Action.complete()))]


def page_for(seed: int) -> Page:
    """Episode `seed`'s page (a pure function of the seed)."""
    return make_page(random.Random(f"reading-page:{seed}"))


def write_shard(renderer: PageRenderer, out: Path, first_seed: int, count: int) -> dict[str, int]:
    """Render episodes first_seed .. first_seed + count - 1 into one shard (written whole, then renamed)."""
    from autoui.data.aitw import AITWWriter
    from autoui.data.example import Episode

    final = out / DATASET / f"{DATASET}-{first_seed:07d}-{first_seed + count - 1:07d}"
    if final.exists():
        return {"episodes": 0, "steps": 0, "skipped": 0, "shards_reused": 1}
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{final.name}.partial")  # hidden: readers skip it
    totals = {"episodes": 0, "steps": 0, "skipped": 0, "shards_reused": 0}
    with AITWWriter(partial) as writer:
        for seed in range(first_seed, first_seed + count):
            try:
                steps = renderer.steps(page_for(seed), f"{DATASET}/page/{seed}")
            except ReadingPageError as exc:
                log.warning("%s", exc)
                totals["skipped"] += 1
                continue
            writer.write_episode(Episode(steps[0].episode_id, steps[0].goal, DATASET, steps))
            totals["episodes"] += 1
            totals["steps"] += len(steps)
    partial.rename(final)
    return totals


def _shard_job(job: tuple[str, int, int, str | None, str]) -> dict[str, int]:
    """One shard in a worker process, on that process's own browser (`autoui.envs.workers`)."""
    out, first_seed, count, chromium_path, view = job
    renderer = worker_resource(f"reading-renderer-{view}", lambda: PageRenderer(chromium_path, view),
                               PageRenderer.close)
    return write_shard(renderer, Path(out), first_seed, count)


def collect_pages(out: str | Path, episodes: int, seed: int = 0, shard_size: int = 25, workers: int = 1,
                  chromium_path: str | None = None, progress: bool = True, view: str = "task") -> dict[str, int]:
    """Render `episodes` reading pages (seeds seed ..) into AITW shards under OUT/reading/, one browser per worker."""
    if episodes < 1 or shard_size < 1 or workers < 1:
        raise ValueError(f"episodes, shard_size and workers must be >= 1, got {episodes}, {shard_size}, {workers}")
    check_view(view)
    from tqdm import tqdm

    jobs = [(str(out), s, min(shard_size, seed + episodes - s), chromium_path, view)
            for s in range(seed, seed + episodes, shard_size)]
    totals = {"episodes": 0, "steps": 0, "skipped": 0, "shards_reused": 0}
    bar = tqdm(total=len(jobs), desc="reading pages", unit="shard", disable=not progress)
    try:
        with job_results(_shard_job, jobs, workers) as results:
            for done in results:
                totals = {k: totals[k] + done[k] for k in totals}
                bar.update()
    finally:
        bar.close()
    return totals
