"""MiniWoB++ tasks as an autoui environment, on the pages shipped in the `miniwob` wheel.

The wheel's `html/` folder is served over http on 127.0.0.1 (an ephemeral port, one
server per process) so the flight tasks, which need http, work too. An episode is
reproducible from its seed (`Math.seedrandom(seed)` before the problem is generated);
time decay is switched off (`core.EPISODE_MAX_TIME` set very large) so the reward only
says whether the task was done. Success is binary: raw reward > 0.

The observation is the task area only (160x210 CSS px at the top-left; 375x667 for
flight tasks), `scale` times larger in pixels; `view="area"` shows only the 160x160 play
area below the yellow goal banner (the goal is given as text anyway), so the model's
fixed-size input spends its pixels on the page instead of the banner. BACK and HOME have
no meaning inside a single task page and are ignored (recorded in metadata) rather than
leaving the task.
When the page ends an episode it shows its "START" cover; the final observation hides
it so it shows the task as the last action left it.
"""
from __future__ import annotations

import difflib
import functools
import logging
import pathlib
import random
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from autoui.actions import Action, ActionType
from autoui.envs.base import EnvError, Observation
from autoui.envs.browser import BrowserConfig, BrowserEnv, Viewport
from autoui.envs.dom import UIElement, list_elements

log = logging.getLogger("autoui.envs.miniwob")

NO_DECAY_MS = 10**9  # ~11.6 days; setTimeout overflows (fires at once) above 2**31 - 1 ms
TASK_AREA = (160, 210)  # CSS px, the package's TASK_WIDTH x TASK_HEIGHT
FLIGHT_TASK_AREA = (375, 667)
BANNER_HEIGHT = 50  # CSS px: core.css's #query, 44 px + 2 x 3 px padding
VIEWS = ("task", "area")  # the whole task (banner included) | the play area below the banner
WINDOW = (500, 320)  # the package's own window sizes
FLIGHT_WINDOW = (600, 800)
DATA_MODES = ("train", "test", "default")


def check_view(view: str) -> None:
    """Raise ValueError unless `view` is one of VIEWS."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")

START_JS = """([seed, mode, maxTime]) => {
  if (core.EP_TIMER !== null) core.endEpisode(0, false, 'reset');
  Math.seedrandom(String(seed));
  core.setDataMode(mode);
  core.EPISODE_MAX_TIME = maxTime;
  core.startEpisodeReal();
}"""
STATE_JS = """() => ({done: WOB_DONE_GLOBAL, raw: WOB_RAW_REWARD_GLOBAL, reward: WOB_REWARD_GLOBAL,
  reason: WOB_REWARD_REASON == null ? null : String(WOB_REWARD_REASON)})"""
UTTERANCE_JS = "() => { const u = core.getUtterance(); return typeof u === 'string' ? u : u.utterance; }"
# MiniWoB's own panel beside the task area: its countdown ticks every second and is never observed
OUTSIDE_TASK = "#reward-display"
HIDE_COVER_JS = "() => { const c = document.getElementById('sync-task-cover'); if (c) c.style.display = 'none'; }"


def html_dir() -> pathlib.Path:
    """The `html/` folder inside the installed `miniwob` package."""
    try:
        import miniwob
    except ImportError as exc:
        raise EnvError("the MiniWoB++ pages come with the `miniwob` package: pip install 'autoui[browser]'") from exc
    return pathlib.Path(miniwob.__file__).parent / "html"


def list_tasks() -> list[str]:
    """Every task name: `click-button`, ..., and flight tasks as `flight.AA`."""
    root = html_dir()
    names = sorted(p.stem for p in (root / "miniwob").glob("*.html"))
    names += sorted(f"flight.{p.parent.name}" for p in (root / "flight").glob("*/wrapper.html"))
    return names


def task_path(task: str) -> str:
    """The page of `task` relative to the html folder; raises EnvError for unknown tasks."""
    rel = f"flight/{task.split('.', 1)[1]}/wrapper.html" if task.startswith("flight.") else f"miniwob/{task}.html"
    if not (html_dir() / rel).is_file():
        close = difflib.get_close_matches(task, list_tasks(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise EnvError(f"unknown MiniWoB task {task!r}{hint}")
    return rel


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("http: " + format, *args)


@functools.lru_cache(maxsize=1)
def serve_html() -> str:
    """Start (once per process) an http server for the html folder; returns its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(html_dir()))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="autoui-miniwob-http", daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/"


class MiniWoBEnv(BrowserEnv):
    """One MiniWoB++ task page in headless Chromium. Attributes: page, task, seed, goal."""

    def __init__(
        self, task: str | None = None, *, headless: bool = True, scale: float = 1, max_steps: int | None = None,
        chromium_path: str | None = None, data_mode: str = "test", swipe_mode: str = "auto", annotate: bool = False,
        view: str = "task",
    ):
        if data_mode not in DATA_MODES:
            raise ValueError(f"data_mode must be one of {DATA_MODES}, got {data_mode!r}")
        check_view(view)
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {max_steps}")
        if task is not None:
            task_path(task)
        viewport = Viewport(*(FLIGHT_WINDOW if task and task.startswith("flight.") else WINDOW), device_scale_factor=scale)
        super().__init__(BrowserConfig(viewport=viewport, headless=headless, chromium_path=chromium_path,
                                       swipe_mode=swipe_mode, annotate=annotate, settle_ignore=OUTSIDE_TASK))
        self.task, self.seed, self.data_mode, self.max_steps, self.view = task, 0, data_mode, max_steps, view

    # -- geometry: the observation is the task area (or its play area) ---------------------
    @property
    def _flight(self) -> bool:
        return bool(self.task and self.task.startswith("flight."))

    def region(self) -> tuple[float, float, float, float]:
        if self._flight:
            return (0.0, 0.0, float(FLIGHT_TASK_AREA[0]), float(FLIGHT_TASK_AREA[1]))
        top = BANNER_HEIGHT if self.view == "area" else 0
        return (0.0, float(top), float(TASK_AREA[0]), float(TASK_AREA[1] - top))

    def screenshot_clip(self) -> dict[str, float]:
        left, top, width, height = self.region()
        return {"x": left, "y": top, "width": width, "height": height}

    def elements(self, selector: str = "*", leaves_only: bool = False) -> list[UIElement]:
        """Visible elements of the task area matching `selector`, boxes normalized to the observation."""
        with self.guard(f"list elements {selector!r}"):
            return list_elements(self.page, self.region(), selector, leaves_only=leaves_only)

    def evaluate(self, js: str, arg: Any = None) -> Any:
        """`page.evaluate` passthrough (for experts reading the DOM)."""
        with self.guard("evaluate JS"):
            return self.page.evaluate(js, arg)

    # -- episode ------------------------------------------------------------------------
    def reset(self, task: str | None = None, seed: int | None = None) -> Observation:
        """Start an episode of `task` (default: the current one) generated from `seed`."""
        task = task or self.task
        if task is None:
            raise EnvError("no MiniWoB task given: MiniWoBEnv('click-button') or reset(task='click-button')")
        url = serve_html() + task_path(task)
        self._ensure_started()
        self._use_task(task)
        self.seed = random.randrange(2**31) if seed is None else int(seed)
        self._done, self._steps = False, 0
        with self.guard(f"start {task} (seed {self.seed})"):
            if self.page.url != url:
                self.page.goto(url, wait_until="load", timeout=self.config.load_timeout_ms * 4)
                self.page.wait_for_selector("#sync-task-cover", state="attached", timeout=self.config.load_timeout_ms)
            self.home_url = url
            self.page.evaluate(START_JS, [self.seed, self.data_mode, NO_DECAY_MS])
            self.page.wait_for_function("() => WOB_TASK_READY === true", timeout=self.config.load_timeout_ms)
            self.goal = self.page.evaluate(UTTERANCE_JS)
        return self.observe(task=task, seed=self.seed)

    def _use_task(self, task: str) -> None:
        width, height = FLIGHT_WINDOW if task.startswith("flight.") else WINDOW
        if self.page.viewport_size != {"width": width, "height": height}:
            self.page.set_viewport_size({"width": width, "height": height})
        self.task = task

    def step(self, action: Action) -> Observation:
        """Run `action`; the observation says done/reward/success once the page ends the episode."""
        self._begin_step(action)
        extra: dict[str, Any] = {}
        with self.guard(f"run {action} on {self.task}"):
            if action.action_type in (ActionType.STATUS_TASK_COMPLETE, ActionType.STATUS_TASK_IMPOSSIBLE):
                # stopping before the page judged the task: a failure, like MiniWoB's own timeout
                self.page.evaluate("(why) => core.endEpisode(-1, false, why)", f"agent: {action.kind}")
            elif action.kind in ("back", "home"):
                extra["ignored"] = action.kind
            else:
                self._navigated = False
                self.execute(action)
                self.settle()
            state = self.page.evaluate(STATE_JS)
            if not state["done"] and self.max_steps is not None and self._steps >= self.max_steps:
                self.page.evaluate("() => core.endEpisode(-1, false, 'max steps')")
                state, extra["truncated"] = self.page.evaluate(STATE_JS), True
            if state["done"]:
                self._done = True
                self.skip_rest_check()  # the episode is judged: its last screen need not wait for animations
                self.page.evaluate(HIDE_COVER_JS)
        return self._observe_state(state, extra)

    def _observe_state(self, state: dict[str, Any], extra: dict[str, Any]) -> Observation:
        obs = self.observe(task=self.task, seed=self.seed, reason=state["reason"], env_reward=state["reward"], **extra)
        if not state["done"]:
            return obs
        raw = float(state["raw"])
        return Observation(obs.screenshot, obs.goal, obs.width, obs.height, obs.metadata, raw, True, raw > 0)
