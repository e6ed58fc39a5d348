"""The action space and both text formats: validation, round trips, boundaries, errors."""
import math
import random

import pytest

from autoui.actions import (
    Action, ActionError, ActionParseError, ActionType, TAP_THRESHOLD,
    format_action, format_autoui, format_compact, parse_action, parse_autoui, parse_compact,
)


def random_action(rng: random.Random) -> Action:
    kind = rng.choice(["tap", "swipe", "type", "back", "home", "enter", "done", "impossible"])
    pt = lambda: (rng.randint(0, 1000) / 1000, rng.randint(0, 1000) / 1000)  # noqa: E731
    if kind == "tap":
        return Action.tap(*pt())
    if kind == "swipe":
        while True:
            a, b = pt(), pt()
            if math.dist(a, b) > TAP_THRESHOLD:
                return Action.swipe(a, b)
    if kind == "type":
        return Action.type(rng.choice(["hello world", "a;b", "back\\slash", "line\nbreak", "café ☕", "x"]))
    return {"back": Action.back, "home": Action.home, "enter": Action.enter,
            "done": Action.complete, "impossible": Action.impossible}[kind]()


def test_compact_round_trip_is_exact():
    rng = random.Random(0)
    for _ in range(2000):
        a = random_action(rng)
        plan = tuple(rng.choice(list(ActionType)) for _ in range(rng.randint(0, 4))) or None
        parsed = parse_action(format_compact(a, plan))
        assert parsed.action == a and parsed.plan == plan and parsed.fmt == "compact"


def test_autoui_round_trip_taps_and_non_gestures():
    rng = random.Random(1)
    for _ in range(2000):
        a = random_action(rng)
        if a.is_swipe:
            continue
        parsed = parse_action(format_autoui(a, [a.action_type]))
        expected = a
        if a.action_type == ActionType.TYPE:  # Auto-UI strips quotes and backslashes
            expected = Action.type(a.typed_text.replace("\\", ""))
        assert parsed.action == expected and parsed.plan == (a.action_type,) and parsed.fmt == "autoui"


def test_autoui_exact_published_text():
    text = ('Action Plan: [DUAL_POINT,TYPE,PRESS_ENTER] ; Action Decision: "action_type": "DUAL_POINT", '
            '"touch_point": "[0.2191, 0.5017]", "lift_point": "[0.2191, 0.5017]", "typed_text": ""')
    a = Action.tap(0.21908, 0.50172)
    assert format_autoui(a, [ActionType.DUAL_POINT, ActionType.TYPE, ActionType.PRESS_ENTER]) == text
    assert parse_autoui(text).action == Action.tap(0.2191, 0.5017)
    assert format_autoui(Action.back()) == (
        '"action_type": "PRESS_BACK", "touch_point": "[-1.0, -1.0]", "lift_point": "[-1.0, -1.0]", "typed_text": ""')
    assert '"typed_text": "its a test"' in format_autoui(Action.type('it\'s a "test"'))


@pytest.mark.parametrize("direction,touch,lift", [
    ("up", (0.8, 0.5), (0.2, 0.5)), ("down", (0.2, 0.5), (0.8, 0.5)),
    ("left", (0.5, 0.8), (0.5, 0.2)), ("right", (0.5, 0.2), (0.5, 0.8)),
])
def test_swipes_render_as_scroll_points_in_autoui(direction, touch, lift):
    a = Action.swipe((touch[0] + 0.05, touch[1]), (lift[0] + 0.05, lift[1]))
    assert a.scroll_direction == direction
    back = parse_autoui(format_autoui(a)).action
    assert back.touch_yx == touch and back.lift_yx == lift and back.scroll_direction == direction


def test_tap_swipe_threshold_boundary():
    assert Action.swipe((0.0, 0.0), (0.0, 0.04)).is_tap  # exactly 0.04 is a tap
    assert Action.swipe((0.0, 0.0), (0.0, 0.0401)).is_swipe
    assert Action.swipe((0.5, 0.5), (0.9, 0.9)).scroll_direction == "down"  # tie goes to y
    assert Action.back().kind == "back" and Action.tap(0, 1).kind == "tap"


def test_validation_errors():
    with pytest.raises(ActionError):
        Action.tap(1.2, 0.5)
    with pytest.raises(ActionError):
        Action.tap(float("nan"), 0.5)
    with pytest.raises(ActionError):
        Action(ActionType.PRESS_BACK, typed_text="x")
    with pytest.raises(ActionError):
        Action(99)
    with pytest.raises(ActionError):
        Action.scroll("sideways")
    # non-gesture points are normalised to AITW's (-1, -1)
    assert Action(ActionType.PRESS_HOME, (0.3, 0.3)).touch_yx == (-1.0, -1.0)


@pytest.mark.parametrize("text", [
    "", "tap", "tap 1 2 3", "tap 1001 5", "tap -1 5", "swipe 1 2 3", "jump 1 2", "scroll sideways",
    "teleport ; tap 1 2", "back now", '"action_type": "FLY"', '"action_type": "DUAL_POINT"',
    '"action_type": "DUAL_POINT", "touch_point": "[1.5, 0.2]", "lift_point": "[0.1, 0.2]"',
    "Action Plan: [DUAL_POINT,WHAT] ; Action Decision: \"action_type\": \"PRESS_BACK\"",
    "__import__('os').system('echo pwned')",
])
def test_malformed_text_raises_one_error_type_with_the_text(text):
    with pytest.raises(ActionParseError) as info:
        parse_action(text)
    assert info.value.text == text


def test_non_string_input():
    with pytest.raises(ActionParseError):
        parse_action(None)  # type: ignore[arg-type]


def test_pixels_and_dict_round_trip():
    a = Action.swipe((0.25, 0.5), (0.75, 0.5))
    assert a.touch_pixels(1080, 2400) == (540.0, 600.0)
    assert a.lift_pixels(1080, 2400) == (540.0, 1800.0)
    assert Action.from_dict(a.to_dict()) == a
    with pytest.raises(ActionError):
        Action.back().touch_pixels(100, 100)
    assert format_action(a, "compact") == "swipe 250 500 750 500"
    with pytest.raises(ValueError):
        format_action(a, "yaml")


def test_compact_tolerates_whitespace_and_scroll_shorthand():
    assert parse_compact("  tap   12  34 \n").action == Action.tap(0.012, 0.034)
    assert parse_compact("point;scroll up").action == Action.scroll("up")
    # an unescaped ";" separates the plan, so text must escape it (format_compact does)
    with pytest.raises(ActionParseError):
        parse_compact("type hello ; tap 1 2")
    assert parse_compact(format_compact(Action.type("hello ; tap 1 2"))).action.typed_text == "hello ; tap 1 2"


def test_cli_exits_quietly_when_the_reader_goes_away():
    import subprocess
    import sys

    # a command that writes far more than a pipe holds, to a reader that already left
    script = (
        "import sys, autoui.cli as c\n"
        "def handler(args):\n"
        "    for _ in range(100000): print('x' * 100)\n"
        "p = c.build_parser(); p.set_defaults(handler=handler, command='flood')\n"
        "c.build_parser = lambda: p\n"
        "sys.exit(c.main([]))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err
