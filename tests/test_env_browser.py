"""The browser environment on local pages served over real HTTP, in real headless Chromium."""
from __future__ import annotations

import functools
import os
import signal
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from autoui.actions import Action
from autoui.envs.base import BrowserCrashed, BrowserNotFound, EnvError, Observation
from autoui.envs.chromium import find_chromium
from autoui.envs.dom import list_elements

needs_chromium = pytest.mark.browser  # skipped without Chromium (tests/conftest.py)

GRID = """<!doctype html><html><head>{meta}<title>grid</title></head><body style="margin:0">
<div id="g" style="display:grid;grid-template-columns:repeat(4,25vw);grid-template-rows:repeat(4,25vh)"></div>
<script>window.clicked = [];
for (let i = 0; i < 16; i++) {{ const b = document.createElement('button'); b.id = 'b' + i; b.textContent = 'B' + i;
  b.style.cssText = 'width:100%;height:100%'; b.onclick = () => window.clicked.push(i);
  document.getElementById('g').appendChild(b); }}</script></body></html>"""
PAGES = {
    "grid.html": GRID.format(meta=""),
    "grid-meta.html": GRID.format(meta='<meta name="viewport" content="width=device-width, initial-scale=1">'),
    "form.html": '<!doctype html><html><body><input id="q" style="width:50vw;height:20vh">'
                 '<a id="next" href="long.html" style="display:block;height:30vh">next</a></body></html>',
    "range.html": '<!doctype html><html><body style="margin:0"><input id="r" type="range" min="0" max="100" '
                  'value="0" style="width:80vw;height:40px;margin:0 10vw"><div style="height:3000px"></div></body></html>',
    "long.html": '<!doctype html><html><body style="margin:0"><div style="height:5000px">long</div></body></html>',
    # a click starts a script animation the way jQuery runs one: a 13 ms timer moving a red box
    # from the left edge to the right half over ~300 ms (the box's final place is x >= 50vw)
    "slide.html": '<!doctype html><html><body style="margin:0"><button id="go" style="width:100vw;height:20vh">go'
                  '</button><div id="box" style="position:absolute;top:50vh;left:0;width:10vw;height:20vh;'
                  'background:#f00"></div><script>document.getElementById("go").onclick = () => { let n = 0;'
                  'const t = setInterval(() => { n++; document.getElementById("box").style.left = (n * 2.5) + "vw";'
                  'if (n === 24) clearInterval(t); }, 13); };</script></body></html>',
    # a CSS transition: the page turns from white to blue over 300 ms after a click
    "fade.html": '<!doctype html><html><body style="margin:0"><div id="p" style="width:100vw;height:100vh;'
                 'background:#fff;transition:background-color 300ms linear" '
                 'onclick="this.style.backgroundColor=\'#00f\'"></div></body></html>',
    # never at rest: an endless CSS spinner (not waited for) and, after a click, a clock ticking
    # every 5 ms (waited for until the cap)
    "busy.html": '<!doctype html><html><head><style>@keyframes spin{to{transform:rotate(360deg)}}</style></head>'
                 '<body style="margin:0"><div style="width:40px;height:40px;background:#0a0;'
                 'animation:spin 1s linear infinite"></div><button id="t" style="width:100vw;height:50vh" '
                 'onclick="setInterval(() => this.textContent = performance.now(), 5)">tick</button></body></html>',
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    for name, html in PAGES.items():
        (root / name).write_text(html)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def env():
    from autoui.envs.browser import BrowserEnv

    e = BrowserEnv()
    yield e
    e.close()


def test_observation_validates_its_screenshot():
    with pytest.raises(ValueError, match="uint8"):
        Observation(np.zeros((4, 4, 3), np.float32), "g", 4, 4)
    with pytest.raises(ValueError, match="does not match"):
        Observation(np.zeros((4, 5, 3), np.uint8), "g", 4, 4)


def test_find_chromium_explicit_bad_path_is_an_error(monkeypatch):
    with pytest.raises(BrowserNotFound, match="apt-get install"):
        find_chromium("/nonexistent/chrome")
    monkeypatch.setenv("AUTOUI_CHROMIUM", "/nonexistent/chrome2")
    with pytest.raises(BrowserNotFound, match="AUTOUI_CHROMIUM"):
        find_chromium()


def test_config_rejects_bad_values():
    from autoui.envs.browser import BrowserConfig

    with pytest.raises(ValueError, match="viewport"):
        BrowserConfig(viewport="tablet")
    with pytest.raises(ValueError, match="swipe_mode"):
        BrowserConfig(swipe_mode="fling")


@needs_chromium
@pytest.mark.parametrize("viewport,page", [("desktop", "grid.html"), ("phone", "grid.html"), ("phone", "grid-meta.html")])
def test_tap_lands_on_the_intended_button(env, site, viewport, page):
    env.use_viewport(viewport)
    obs = env.reset(site + page)
    scale = 2.625 if viewport == "phone" else 1.0
    # device pixels, up to Chromium's rounding of 412 * 2.625 = 1081.5
    assert obs.width == pytest.approx(env.config.screen.width * scale, abs=1)
    assert obs.height == pytest.approx(env.config.screen.height * scale, abs=1)
    targets = [0, 6, 9, 15]
    for i in targets:
        row, col = divmod(i, 4)
        env.step(Action.tap((row + 0.5) / 4, (col + 0.5) / 4))
    assert env.page.evaluate("window.clicked") == targets
    # the element list maps boxes back into the same normalized space
    (b6,) = list_elements(env.page, env.region(), "#b6")
    assert b6.center == pytest.approx((1.5 / 4, 2.5 / 4), abs=0.01) and b6.text == "B6" and b6.ui_type == "TEXT"


@needs_chromium
def test_type_enter_back_home(env, site):
    env.use_viewport("desktop")
    env.reset(site + "form.html")
    env.step(Action.tap(0.1, 0.25))  # focus the input
    env.step(Action.type("héllo wörld"))
    assert env.page.evaluate("document.getElementById('q').value") == "héllo wörld"
    env.step(Action.tap(0.35, 0.1))  # the link
    assert env.page.url.endswith("long.html")
    env.step(Action.back())
    assert env.page.url.endswith("form.html")
    env.step(Action.scroll("up"))  # nothing to scroll: harmless
    env.step(Action.tap(0.35, 0.1))
    obs = env.step(Action.home())
    assert obs.metadata["url"].endswith("form.html")
    done = env.step(Action.complete())
    assert done.done and done.success is None
    with pytest.raises(EnvError, match="over"):
        env.step(Action.enter())


@needs_chromium
@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_swipe_scrolls_a_long_page(env, site, viewport):
    env.use_viewport(viewport)
    env.reset(site + "long.html")
    env.step(Action.scroll("up"))  # finger moves up: the content scrolls down
    down = env.page.evaluate("scrollY")
    assert down > 100
    env.step(Action.scroll("down"))
    assert env.page.evaluate("scrollY") < down


@needs_chromium
def test_swipe_over_a_slider_is_a_drag(env, site):
    env.use_viewport("desktop")
    env.reset(site + "range.html")  # the page scrolls too: "auto" must still pick a drag here
    y = 20 / 800
    env.step(Action.swipe((y, 0.1), (y, 0.5)))
    assert 40 <= int(env.page.evaluate("document.getElementById('r').value")) <= 60
    assert env.page.evaluate("scrollY") == 0


def _main_browser_pids() -> list[int]:
    """Chromium browser processes (not renderers) started by this test process."""
    mine, pids = {os.getpid()}, []
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    procs[int(d)] = (ppid, f.read().decode(errors="replace"))
            except (OSError, ValueError):
                continue
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _) in procs.items():
            if ppid in mine and pid not in mine:
                mine.add(pid)
                changed = True
    for pid in mine:
        if pid in procs and "--user-data-dir" in procs[pid][1] and "--type=" not in procs[pid][1]:
            pids.append(pid)
    return pids


@needs_chromium
def test_page_crash_then_restart(env, site):
    env.use_viewport("desktop")
    env.reset(site + "grid.html")
    with pytest.raises(BrowserCrashed):
        env.reset("chrome://crash")
    with pytest.raises(BrowserCrashed):
        env.step(Action.tap(0.5, 0.5))
    env.restart()
    env.reset(site + "grid.html")
    env.step(Action.tap(0.1, 0.1))
    assert env.page.evaluate("window.clicked") == [0]


@needs_chromium
def test_killed_browser_then_restart(env, site):
    env.use_viewport("desktop")
    env.reset(site + "grid.html")
    pids = _main_browser_pids()
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    with pytest.raises(BrowserCrashed):
        for _ in range(50):  # the disconnect is noticed on the next call to the browser
            env.step(Action.tap(0.1, 0.1))
    env.restart()
    env.reset(site + "grid.html")
    env.step(Action.tap(0.9, 0.9))
    assert env.page.evaluate("window.clicked") == [15]
    assert _main_browser_pids() != pids


@needs_chromium
def test_observation_waits_for_a_script_animation_to_finish(env, site):
    env.use_viewport("desktop")
    env.reset(site + "slide.html")
    obs = env.step(Action.tap(0.1, 0.5))
    assert env.page.evaluate("document.getElementById('box').style.left") == "60vw"  # the last frame ran
    row = obs.screenshot[obs.height * 6 // 10]  # a row through the box
    red = np.flatnonzero((row[:, 0] > 200) & (row[:, 1] < 60))
    assert red.size and red.min() >= obs.width * 0.59  # drawn where it came to rest, not mid-way


@needs_chromium
def test_observation_waits_for_a_css_transition(env, site):
    env.use_viewport("desktop")
    env.reset(site + "fade.html")
    obs = env.step(Action.tap(0.5, 0.5))
    assert obs.screenshot[obs.height // 2, obs.width // 2].tolist() == [0, 0, 255]
    # the transition is seen running right after the action's turn, so the environment waits for
    # it before the screenshot (a slow screenshot could otherwise start mid-way and end after it)
    env.reset(site + "fade.html")
    env.execute(Action.tap(0.5, 0.5))
    env.settle()
    assert env._turn[1] is True
    obs = env.observe()
    assert obs.screenshot[obs.height // 2, obs.width // 2].tolist() == [0, 0, 255]


@needs_chromium
def test_an_overdue_page_timer_is_not_rest(env, site):
    """A starved renderer: the page's timer is due but its main thread is held (here by a busy
    loop), so the DOM has not changed for longer than the quiet window. The change is late,
    not absent: the page is not at rest (this let a sliding box be observed mid-way in CI)."""
    from autoui.envs.page_rest import AT_REST_JS

    env.use_viewport("desktop")
    env.reset(site + "grid.html")
    since = env.page.evaluate("performance.now()")
    starved = """([js, since]) => {
      const atRest = (0, eval)(js);
      setTimeout(() => { document.body.dataset.late = '1'; }, 5);
      const t = performance.now(); while (performance.now() - t < 60) {}
      return [atRest([since, 25]), window.__autouiRest.overdue()];
    }"""
    assert env.page.evaluate(starved, [AT_REST_JS, since]) == [False, True]
    assert env.wait_for_rest() is True
    assert env.page.evaluate("document.body.dataset.late") == "1"  # it ran before rest was called
    # a timer due later (a popup in 5 s) is not waited for
    env.page.evaluate("window.__later = setTimeout(() => { document.body.dataset.popup = '1'; }, 5000)")
    assert env.page.evaluate("window.__autouiRest.overdue()") is False
    assert env.wait_for_rest() is True
    env.page.evaluate("clearTimeout(window.__later)")


@needs_chromium
def test_watched_page_timers_behave_as_the_page_expects(env, site):
    env.use_viewport("desktop")
    env.reset(site + "grid.html")
    out = env.page.evaluate("""async () => {
      const out = {};
      out.args = await new Promise(r => setTimeout((a, b) => r([a, b]), 1, 'x', 2));
      out.ticks = await new Promise(r => { let n = 0; const id = setInterval(() => {
        if (++n === 3) { clearTimeout(id); r(n); } }, 1); });  // ids are shared: clearTimeout stops it
      window.__s = 0; setTimeout("window.__s = 7", 0);  // a string handler still runs
      await new Promise(r => setTimeout(r, 30)); out.string = window.__s;
      out.stamp = typeof await new Promise(r => requestAnimationFrame(r));
      let ran = false; cancelAnimationFrame(requestAnimationFrame(() => { ran = true; }));
      await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))); out.cancelled = !ran;
      try { requestAnimationFrame(5); } catch (e) { out.error = e.name; }
      out.overdue = window.__autouiRest.overdue();  // nothing left pending
      return out;
    }""")
    assert out == {"args": ["x", 2], "ticks": 3, "string": 7, "stamp": "number", "cancelled": True,
                   "error": "TypeError", "overdue": False}


@needs_chromium
def test_rest_ignores_endless_animations_and_gives_up_at_the_cap(env, site):
    from dataclasses import replace

    env.use_viewport("desktop")
    env.reset(site + "busy.html")
    cfg = env.config
    assert env.wait_for_rest() is True  # the endless spinner alone never counts as "still animating"
    try:
        # the default 25 ms quiet window: a renderer stalled on a loaded machine makes the 5 ms
        # clock late, and a late tick is an overdue timer, not a quiet page
        env.config = replace(cfg, settle_cap_ms=300)
        obs = env.step(Action.tap(0.3, 0.5))  # starts the 5 ms clock: the DOM never rests
        assert obs.width == 1280  # observed anyway, after the cap
        assert env.wait_for_rest() is False
    finally:
        env.config = cfg


@needs_chromium
def test_a_still_page_is_not_waited_for(env, site):
    env.use_viewport("desktop")
    env.reset(site + "grid.html")
    env.settle()
    since, animating = env._turn
    assert not animating
    env.screenshot()
    # nothing changed since the action's turn and the screenshot took longer than the quiet
    # window (else the at-rest check asks for a wait, which is what it is for)
    from autoui.envs.page_rest import AT_REST_JS

    assert env.page.evaluate(AT_REST_JS, [since, 0]) is True
    env.page.evaluate("document.body.dataset.x = '1'")  # a change after `since`
    assert env.page.evaluate(AT_REST_JS, [since, 0]) is False


@needs_chromium
def test_changes_inside_ignored_elements_do_not_hold_the_page(site):
    from autoui.envs.browser import BrowserEnv

    with BrowserEnv(settle_ignore="#t", settle_cap_ms=2000) as env:  # "#t" becomes a clock once tapped
        env.reset(site + "busy.html")
        env.step(Action.tap(0.3, 0.5))
        assert env.page.evaluate("document.getElementById('t').textContent") != "tick"  # it ticks
        assert env.wait_for_rest() is True
