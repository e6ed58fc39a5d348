"""A web page as an autoui environment: Playwright (sync API) driving system Chromium.

Actions arrive as normalized (y, x) of the observation. The observation shows a region
of the page (the whole viewport by default) in device pixels, while Playwright's mouse
works in CSS pixels; `to_css` maps one onto the other using the region as it is when
the action runs, so taps land on the pixel the agent pointed at whatever the DPI.

Gestures: a tap is a real mouse click. A swipe is executed the way the page under the
finger would respond to a hand: over something draggable (draggable=true, a range input,
jQuery UI widgets) or where nothing can scroll, it is a real drag (mouse down, move in
steps, up), which also selects text as a drag does; over a scrollable area it is a mouse
wheel turn of the swipe's length at the touch point (finger up = content moves up =
wheel down). `swipe_mode` forces one behaviour ("drag" or "wheel").
"""
from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

import numpy as np
from PIL import Image

from autoui.actions import Action, ActionType
from autoui.envs import chromium
from autoui.envs.base import BrowserCrashed, EnvError, Environment, Observation
from autoui.envs.dom import annotations, list_elements
from autoui.envs.page_rest import AT_REST_JS, SETTLE_JS, TURN_JS, watch_script

log = logging.getLogger("autoui.envs.browser")

SWIPE_MODES = ("auto", "drag", "wheel")
SCREENSHOT_TRIES = 5
# Decides "drag" vs "wheel" for a swipe starting at (x, y) moving by (dx, dy) CSS px.
SWIPE_PROBE_JS = r"""
([x, y, dx, dy]) => {
  let el = document.elementFromPoint(x, y);
  for (let e = el; e; e = e.parentElement) {
    if (e.draggable || (e.tagName === 'INPUT' && e.type === 'range')) return 'drag';
    const c = (e.className && e.className.baseVal === undefined) ? String(e.className) : '';
    if (/\bui-(draggable|sortable|slider|resizable|selectable)/.test(c)) return 'drag';
  }
  const vertical = Math.abs(dy) >= Math.abs(dx);
  for (let e = el; e; e = e.parentElement) {
    const st = getComputedStyle(e);
    const ov = vertical ? st.overflowY : st.overflowX;
    const room = vertical ? e.scrollHeight - e.clientHeight : e.scrollWidth - e.clientWidth;
    if (room > 1 && (ov === 'auto' || ov === 'scroll' || e === document.scrollingElement)) return 'wheel';
  }
  const se = document.scrollingElement;
  const room = se ? (vertical ? se.scrollHeight - innerHeight : se.scrollWidth - innerWidth) : 0;
  return room > 1 ? 'wheel' : 'drag';
}
"""
VISUAL_VIEWPORT_JS = (
    "() => { const v = window.visualViewport;"
    " return v ? [v.offsetLeft, v.offsetTop, v.width, v.height] : [0, 0, innerWidth, innerHeight]; }"
)

@dataclass(frozen=True)
class Viewport:
    """Screen size in CSS pixels; screenshots are `device_scale_factor` times larger."""

    width: int
    height: int
    device_scale_factor: float = 1.0
    is_mobile: bool = False
    has_touch: bool = False

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or self.device_scale_factor <= 0:
            raise ValueError(f"viewport sizes and scale must be positive, got {self}")


VIEWPORTS = {
    "desktop": Viewport(1280, 800),
    "phone": Viewport(412, 915, device_scale_factor=2.625, is_mobile=True, has_touch=True),
}


@dataclass(frozen=True)
class BrowserConfig:
    """Settings of a browser environment (validated on construction)."""

    start_url: str = "about:blank"  # HOME goes back here; reset(task=URL) changes it
    goal: str = ""
    viewport: str | Viewport = "desktop"  # a preset name or a Viewport
    headless: bool = True
    chromium_path: str | None = None
    swipe_mode: str = "auto"
    swipe_steps: int = 8  # mouse moves per drag: drag handlers see intermediate positions
    settle_frames: int = 0  # animation frames to wait after an action (each ~16 ms)
    settle_quiet_ms: int = 25  # the screen is at rest once the DOM has not changed for this long (0: no check)
    settle_cap_ms: int = 1000  # longest wait for the page to come to rest (navigations excepted)
    settle_ignore: str = ""  # CSS selector: changes inside these elements never make the page "busy"
    load_timeout_ms: int = 5000  # longest wait for a navigation an action started
    annotate: bool = False  # add AITW annotation boxes of visible elements to each observation's metadata
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if isinstance(self.viewport, str) and self.viewport not in VIEWPORTS:
            raise ValueError(f"unknown viewport preset {self.viewport!r}; expected one of {sorted(VIEWPORTS)}")
        if self.swipe_mode not in SWIPE_MODES:
            raise ValueError(f"swipe_mode must be one of {SWIPE_MODES}, got {self.swipe_mode!r}")
        settle = (self.settle_frames, self.settle_quiet_ms, self.settle_cap_ms)
        if self.swipe_steps < 1 or min(settle) < 0 or self.load_timeout_ms <= 0:
            raise ValueError(f"swipe_steps >= 1, settle_frames/quiet/cap >= 0, load_timeout_ms > 0 required: {self}")

    @property
    def screen(self) -> Viewport:
        """The Viewport this config stands for."""
        return VIEWPORTS[self.viewport] if isinstance(self.viewport, str) else self.viewport


class BrowserEnv(Environment):
    """A Chromium tab. `reset(task=URL)` opens URL (the HOME of the episode)."""

    def __init__(self, config: BrowserConfig | None = None, **overrides: Any):
        self.config = replace(config or BrowserConfig(), **overrides)
        self._pw: Any = None
        self._browser: Any = None
        self._context: Any = None
        self.page: Any = None
        self._crashed = False
        self._closing = False
        self._navigated = False
        self._turn: tuple[float, bool] | None = None  # (page clock, animating) after the last action (see settle)
        self._done = False
        self._steps = 0
        self.goal = self.config.goal
        self.home_url = self.config.start_url

    # -- lifecycle --------------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self.page is not None and not self._crashed:
            return
        if self._pw is None:
            self._pw = chromium.acquire_playwright()
        if self._browser is None or not self._browser.is_connected():
            cfg = self.config
            self._browser = chromium.launch(self._pw, cfg.chromium_path, cfg.headless, cfg.extra_args)
            self._browser.on("disconnected", lambda _b: self._closing or self._mark_crashed("browser disconnected"))
        vp = self.config.screen
        self._context = self._browser.new_context(
            viewport={"width": vp.width, "height": vp.height}, device_scale_factor=vp.device_scale_factor,
            is_mobile=vp.is_mobile, has_touch=vp.has_touch,
        )
        self._context.add_init_script(watch_script(self.config.settle_ignore))
        self.page = self._context.new_page()
        self.page.on("crash", lambda _p: self._mark_crashed("page crashed"))
        self.page.on("framenavigated", self._on_navigated)
        self.page.on("request", lambda r: r.is_navigation_request() and self._on_navigated(r.frame))
        self._crashed = False

    def _mark_crashed(self, why: str) -> None:
        log.warning("browser environment: %s", why)
        self._crashed = True

    def _on_navigated(self, frame: Any) -> None:
        if self.page is not None and frame == self.page.main_frame:
            self._navigated = True

    def restart(self) -> None:
        """Throw away the page (and the browser if it died) and open fresh ones, same process."""
        with contextlib.suppress(Exception):
            if self._context is not None:
                self._context.close()
        if self._browser is not None and not self._browser.is_connected():
            with contextlib.suppress(Exception):
                self._browser.close()
            self._browser = None
        self.page, self._context, self._crashed = None, None, False
        self._ensure_started()

    def use_viewport(self, viewport: str | Viewport) -> None:
        """Switch device profile (a preset name or a Viewport): a fresh tab in the same browser."""
        self.config = replace(self.config, viewport=viewport)
        if self.page is not None:
            self.restart()

    def close(self) -> None:
        self._closing = True
        for closer in (self._context, self._browser):
            with contextlib.suppress(Exception):
                if closer is not None:
                    closer.close()
        if self._pw is not None:
            with contextlib.suppress(Exception):
                chromium.release_playwright()
        self.page = self._context = self._browser = self._pw = None

    @contextlib.contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Turn Playwright failures into `BrowserCrashed` (dead page/browser) or `EnvError`."""
        from playwright.sync_api import Error as PlaywrightError

        if self._crashed:
            raise BrowserCrashed(f"cannot {what}: the browser crashed earlier; call restart()")
        try:
            yield
        except PlaywrightError as exc:
            text = str(exc).split("\n")[0]
            dead = self._browser is None or not self._browser.is_connected() or self.page.is_closed()
            if self._crashed or dead or "crash" in text.lower() or "has been closed" in text:
                self._crashed = True
                raise BrowserCrashed(f"browser died during {what}: {text}; call restart()") from exc
            raise EnvError(f"browser error during {what}: {text}") from exc

    # -- geometry ---------------------------------------------------------------------
    def region(self) -> tuple[float, float, float, float]:
        """The CSS-pixel rectangle (left, top, width, height) the observation shows, right now.

        This is the visual viewport: on a phone a page without a meta viewport is laid out
        ~980 CSS px wide and zoomed out to fit, so the screen covers more CSS px than its size.
        """
        with self.guard("read the viewport"):
            return tuple(self.page.evaluate(VISUAL_VIEWPORT_JS))

    def to_css(self, y: float, x: float) -> tuple[float, float]:
        """Normalized (y, x) of the observation -> (css_x, css_y) for Playwright's mouse."""
        left, top, width, height = self.region()
        return (left + x * width, top + y * height)

    def to_normalized(self, css_x: float, css_y: float) -> tuple[float, float]:
        """(css_x, css_y) of the page -> normalized (y, x) of the observation."""
        left, top, width, height = self.region()
        return ((css_y - top) / height, (css_x - left) / width)

    # -- episode ----------------------------------------------------------------------
    def reset(self, task: str | None = None, seed: int | None = None) -> Observation:
        """Open `task` (a URL; default the config's start_url) and start a new episode."""
        self._ensure_started()
        if task is not None:
            self.home_url = task
        self._done, self._steps = False, 0
        with self.guard(f"open {self.home_url}"):
            self.page.goto(self.home_url, wait_until="load", timeout=self.config.load_timeout_ms * 4)
        return self.observe()

    def _begin_step(self, action: Action) -> None:
        """Checks every step starts with (subclasses too): a real Action, an episode still running."""
        if not isinstance(action, Action):
            raise TypeError(f"step() takes an autoui.actions.Action, got {type(action).__name__}")
        if self._done:
            raise EnvError("the episode is over; call reset() first")
        self._steps += 1

    def step(self, action: Action) -> Observation:
        """Run `action`, wait for the page to settle, and observe."""
        self._begin_step(action)
        if action.action_type in (ActionType.STATUS_TASK_COMPLETE, ActionType.STATUS_TASK_IMPOSSIBLE):
            self._done = True
            return self.observe(done=True)
        with self.guard(f"run {action}"):
            self._navigated = False
            self.execute(action)
            self.settle()
        return self.observe()

    def execute(self, action: Action) -> None:
        """Perform one non-terminal action with real input events (no settling)."""
        page, kind = self.page, action.kind
        if kind == "tap":
            page.mouse.click(*self.to_css(*action.touch_yx))
        elif kind == "swipe":
            self._swipe(self.to_css(*action.touch_yx), self.to_css(*action.lift_yx))
        elif kind == "type":
            page.keyboard.type(action.typed_text)
        elif kind == "enter":
            page.keyboard.press("Enter")
        elif kind == "back":
            page.go_back(wait_until="commit", timeout=self.config.load_timeout_ms)
        elif kind == "home":
            page.goto(self.home_url, wait_until="commit", timeout=self.config.load_timeout_ms)
        else:
            raise EnvError(f"the browser cannot execute {action.kind!r} actions")

    def _swipe(self, start: tuple[float, float], end: tuple[float, float]) -> None:
        (x0, y0), (x1, y1) = start, end
        mode = self.config.swipe_mode
        if mode == "auto":
            mode = self.page.evaluate(SWIPE_PROBE_JS, [x0, y0, x1 - x0, y1 - y0])
        mouse = self.page.mouse
        mouse.move(x0, y0)
        if mode == "wheel":
            mouse.wheel(x0 - x1, y0 - y1)  # finger moving up scrolls the content down
        else:
            mouse.down()
            mouse.move(x1, y1, steps=self.config.swipe_steps)
            mouse.up()

    def settle(self) -> None:
        """After an action: let the page run what it queued (and load, if it navigated).

        The wait for animations is lazy: the next observation's screenshot is kept only if
        the page did not change while it was taken (`at_rest_screenshot`), so a page with
        nothing moving costs one task turn, and one that animates is observed where things
        came to rest, as a person would see it.
        """
        from playwright.sync_api import Error as PlaywrightError

        cfg = self.config
        self._turn = None
        try:
            since, animating = self.page.evaluate(TURN_JS, [cfg.settle_frames, cfg.settle_cap_ms])
            self._turn = (since, bool(animating)) if cfg.settle_quiet_ms > 0 else None
        except PlaywrightError:
            # the action started a navigation that destroyed the context: wait for the new page below
            self._navigated = True
        if self._navigated:
            self._wait_for_load()

    def _wait_for_load(self) -> None:
        from playwright.sync_api import Error as PlaywrightError

        try:
            self.page.wait_for_load_state("load", timeout=self.config.load_timeout_ms)
        except PlaywrightError as exc:
            if self._crashed or "crash" in str(exc).lower():
                raise
            log.debug("page still loading after %d ms; observing anyway", self.config.load_timeout_ms)

    def _ask_page(self, js: str, arg: Any) -> Any:
        """`page.evaluate`, or None when a navigation replaced the document mid-call (then
        waits for the new one to load). A dead page or browser still raises `BrowserCrashed`."""
        try:
            with self.guard("check whether the page is at rest"):
                return self.page.evaluate(js, arg)
        except BrowserCrashed:
            raise
        except EnvError as exc:
            log.debug("page replaced while checking for rest (%s)", exc)
            self._wait_for_load()
            return None

    def skip_rest_check(self) -> None:
        """Take the next observation as it is, without checking the page is at rest."""
        self._turn = None

    def wait_for_rest(self) -> bool:
        """Wait (up to settle_cap_ms) until the DOM stops changing and finite CSS animations end."""
        cfg = self.config
        rested = bool(self._ask_page(SETTLE_JS, [cfg.settle_cap_ms, cfg.settle_quiet_ms]))
        if not rested:
            log.debug("page not at rest after %d ms (or replaced); observing anyway", cfg.settle_cap_ms)
        return rested

    def at_rest_screenshot(self) -> np.ndarray:
        """A screenshot of the page at rest: retaken after `wait_for_rest` when the page changed
        while the first was taken (only right after an action; see `settle`)."""
        turn, self._turn = self._turn, None
        if turn is None:
            return self.screenshot()
        since, animating = turn
        if animating:  # a CSS transition is under way: it may end while a slow screenshot is taken
            self.wait_for_rest()
            return self.screenshot()
        shot = self.screenshot()
        if self._ask_page(AT_REST_JS, [since, self.config.settle_quiet_ms]):
            return shot
        self.wait_for_rest()
        return self.screenshot()

    def screenshot(self) -> np.ndarray:
        """What the observation shows, in device pixels: RGB np.uint8 [H, W, 3]."""
        from playwright.sync_api import Error as PlaywrightError

        clip = self.screenshot_clip()
        for attempt in range(SCREENSHOT_TRIES):
            try:
                with self.guard("take a screenshot"):
                    png = self.page.screenshot(
                        clip=clip, type="png", scale="device", caret="initial", timeout=self.config.load_timeout_ms
                    )
                break
            except EnvError as exc:
                # a page between two documents (just after a navigation committed) has no frame yet
                if attempt + 1 == SCREENSHOT_TRIES or "Unable to capture" not in str(exc):
                    raise
                log.debug("no frame to capture yet (%s); retrying", exc)
                with contextlib.suppress(PlaywrightError):
                    self.page.wait_for_timeout(50)
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

    def screenshot_clip(self) -> dict[str, float] | None:
        """Playwright's clip for `screenshot`; None = the whole screen (the visual viewport)."""
        return None

    def observe(self, done: bool = False, **extra: Any) -> Observation:
        """The current screen as an Observation (goal, url and step count in metadata)."""
        shot = self.at_rest_screenshot()
        meta = {"url": self.page.url, "step": self._steps, **extra}
        if self.config.annotate:
            with self.guard("list elements"):
                boxes, texts, types = annotations(list_elements(self.page, self.region(), leaves_only=True))
            meta["ui_annotations"] = {"positions": [list(b) for b in boxes], "text": texts, "types": types}
        return Observation(shot, self.goal, shot.shape[1], shot.shape[0], meta, done=done or self._done)
