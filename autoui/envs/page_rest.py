"""Page-side scripts that tell when a web page has come to rest after an action.

A page is at rest when (1) its DOM has not changed for a quiet window, (2) no finite CSS
animation or transition is running (endless ones, like a spinner, never end and are not
waited for), and (3) none of the page's own timers or animation-frame callbacks is overdue.

(3) matters on a busy machine: a jQuery animation ticks every 13 ms, but when the renderer
is starved a tick can come 30 ms late, and a quiet window measured on the wall clock alone
would call the page still half-way through the slide. A timer that is overdue is work the
page has queued and not yet run, so the page cannot be at rest. Timers due later (a popup
in two seconds) are not waited for; the environment caps every wait anyway.

`watch_script()` is installed in every document before its own scripts (`add_init_script`);
the other scripts are `page.evaluate` functions.
They keep the page's originals of setTimeout and requestAnimationFrame for their own waits,
so the checks never count themselves.
"""
from __future__ import annotations

import json

# A pending requestAnimationFrame callback is overdue once it has waited longer than this
# (ms; one frame at 60 Hz plus scheduling slack). Hidden pages run no frames: not counted.
FRAME_BUDGET_MS = 20

WATCH_JS = """
(() => {
  if (window.__autouiRest) return;
  const ignore = %s;  // changes inside these elements do not count (a clock outside the observed region)
  const counts = (m) => !ignore || !(m.target.nodeType === 1 ? m.target : m.target.parentElement)?.closest(ignore);
  const mark = (list) => { if (list.some(counts)) window.__autouiMutatedAt = performance.now(); };
  new MutationObserver(mark).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});

  const now = () => performance.now();
  const timers = new Map();  // timer id -> when it is due next (page clock)
  const frames = new Map();  // animation-frame id -> when it was requested
  const orig = {setTimeout: window.setTimeout, setInterval: window.setInterval, clearTimeout: window.clearTimeout,
                clearInterval: window.clearInterval, raf: window.requestAnimationFrame,
                caf: window.cancelAnimationFrame};
  window.setTimeout = function (fn, ms, ...args) {
    if (typeof fn !== 'function') return orig.setTimeout.call(window, fn, ms, ...args);
    const id = orig.setTimeout.call(window, function (...a) { timers.delete(id); return fn.apply(this, a); }, ms, ...args);
    timers.set(id, now() + Math.max(0, Number(ms) || 0));
    return id;
  };
  window.setInterval = function (fn, ms, ...args) {
    if (typeof fn !== 'function') return orig.setInterval.call(window, fn, ms, ...args);
    const period = Math.max(4, Number(ms) || 0);
    const id = orig.setInterval.call(window, function (...a) {
      timers.set(id, now() + period);
      return fn.apply(this, a);
    }, ms, ...args);
    timers.set(id, now() + period);
    return id;
  };
  window.clearTimeout = function (id) { timers.delete(id); return orig.clearTimeout.call(window, id); };
  window.clearInterval = function (id) { timers.delete(id); return orig.clearInterval.call(window, id); };
  window.requestAnimationFrame = function (cb) {
    if (typeof cb !== 'function') return orig.raf.call(window, cb);
    const id = orig.raf.call(window, function (...a) { frames.delete(id); return cb.apply(this, a); });
    frames.set(id, now());
    return id;
  };
  window.cancelAnimationFrame = function (id) { frames.delete(id); return orig.caf.call(window, id); };

  // True while the page has a timer or (when visible) a frame callback it should have run by now.
  const overdue = () => {
    const t = now();
    for (const due of timers.values()) if (due <= t) return true;
    if (document.visibilityState !== 'visible') return false;
    for (const asked of frames.values()) if (t - asked > %d) return true;
    return false;
  };
  Object.defineProperty(window, '__autouiRest', {value: Object.freeze({overdue, setTimeout: orig.setTimeout,
                                                                       raf: orig.raf})});
})();
"""

# Shared by the checks below: the page's own activity as the watch sees it. Falls back to the
# page's functions (and "nothing overdue") in a document the watch never reached.
_RUNNING_JS = """const rest = window.__autouiRest;
  const later = rest ? rest.setTimeout : setTimeout, frame = rest ? rest.raf : requestAnimationFrame;
  const overdue = () => rest ? rest.overdue() : false;
  const finite = (a) => { const t = a.effect && a.effect.getComputedTiming(); return t && isFinite(t.endTime); };
  const animating = () => document.getAnimations().some((a) => a.playState === 'running' && finite(a));
  const busy = () => animating() || overdue();  // still moving, whatever the DOM clock says
  const last = () => window.__autouiMutatedAt ?? -Infinity;"""

# Let the page run what the action queued (microtasks, a setTimeout(0) turn) and wait `frames`
# animation frames, capped at `cap` ms. Returns [page clock, a finite CSS animation or transition
# is running]: the clock starts the window in which the page must not change for the screenshot
# taken next to count as at rest.
TURN_JS = """([frames, cap]) => new Promise(r => {
  """ + _RUNNING_JS + """
  const done = () => r([performance.now(), animating()]);
  later(done, cap);
  const wait = (n) => n <= 0 ? done() : frame(() => wait(n - 1));
  later(() => wait(frames), 0);
})"""

# After a screenshot: was the page at rest while it was taken? No DOM change since `since`,
# at least `quiet` ms since then, no finite CSS animation running and no page timer overdue.
AT_REST_JS = """([since, quiet]) => {
  """ + _RUNNING_JS + """
  return last() < since && performance.now() - since >= quiet && !busy();
}"""

# Wait until the page is at rest: no DOM change for `quiet` ms, no finite CSS animation or
# transition running, no page timer overdue. Capped at `cap` ms: resolves true at rest, false
# at the cap.
SETTLE_JS = """([cap, quiet]) => new Promise(r => {
  """ + _RUNNING_JS + """
  const t0 = performance.now();
  const check = () => {
    const now = performance.now();
    if (now - last() >= quiet && now - t0 >= quiet && !busy()) return r(true);
    if (now - t0 >= cap) return r(false);
    later(check, 4);
  };
  check();
})"""


def watch_script(ignore_selector: str | None) -> str:
    """The init script for a page; `ignore_selector`: changes inside matching elements don't count."""
    return WATCH_JS % (json.dumps(ignore_selector or None), FRAME_BUDGET_MS)
