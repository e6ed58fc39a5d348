"""Suite loading (envs/miniwob/*.json), the expert registry and goal parsing; no browser needed."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from autoui.envs.suite import (
    SUITES_DIR, Suite, SuiteError, SuiteTask, UnknownSuiteError, UnknownTaskError, list_suites, load_suite,
    parse_suite,
)
from autoui.experts import (
    ExpertPolicy, GoalParseError, UnknownExpertError, expert_tasks, get_expert,
)


def test_default_suite_is_valid_and_large_enough():
    suite = load_suite("default")
    assert suite.name == "default" and suite.description
    assert len(suite.tasks) >= 20
    assert len(set(suite.task_names)) == len(suite.tasks)
    assert all(1 <= t.max_steps <= 30 for t in suite.tasks)
    assert "default" in list_suites()
    assert (SUITES_DIR / "default.json").is_file()


def test_every_default_task_has_an_expert():
    suite = load_suite("default")
    missing = [t for t in suite.task_names if t not in expert_tasks()]
    assert missing == []
    for task in suite.task_names:
        assert task in get_expert(task).tasks


def test_suite_loads_from_a_path_and_round_trips(tmp_path):
    data = {"name": "mini", "description": "two tasks",
            "tasks": [{"task": "click-test", "max_steps": 2}, {"task": "enter-text", "max_steps": 6}]}
    path = tmp_path / "mini.json"
    path.write_text(json.dumps(data))
    suite = load_suite(path)
    assert suite.task_names == ["click-test", "enter-text"]
    assert suite.get("enter-text").max_steps == 6
    assert suite.to_dict() == data
    assert [t.task for t in suite.select(["enter-text"])] == ["enter-text"]


def test_unknown_suite_names_the_known_ones():
    with pytest.raises(UnknownSuiteError, match="default"):
        load_suite("no-such-suite")
    with pytest.raises(UnknownSuiteError, match="does not exist"):
        load_suite("/nonexistent/dir/suite.json")


def test_unknown_task_is_rejected(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", "tasks": [{"task": "click-buton", "max_steps": 3}]}))
    with pytest.raises(UnknownTaskError, match="click-buton"):
        load_suite(path)
    with pytest.raises(UnknownTaskError, match="not in suite"):
        load_suite("default").get("click-buton")


@pytest.mark.parametrize("data, message", [
    ([], "JSON object"),
    ({"name": "x", "tasks": []}, "no tasks"),
    ({"name": "x", "tasks": [{"task": "click-test"}]}, "max_steps"),
    ({"name": "x", "tasks": [{"task": "click-test", "max_steps": 0}]}, "positive integer"),
    ({"name": "x", "tasks": [{"task": "click-test", "max_steps": 2}] * 2}, "twice"),
    ({"name": "x", "tasks": [], "extra": 1}, "unknown keys"),
])
def test_malformed_suites_raise_suite_error(data, message):
    with pytest.raises(SuiteError, match=message):
        parse_suite(data, source="test")


def test_bad_json_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(SuiteError, match="not valid JSON"):
        load_suite(path)


def test_suite_dataclasses_validate():
    with pytest.raises(SuiteError):
        SuiteTask("", 3)
    with pytest.raises(SuiteError):
        SuiteTask("click-test", True)
    assert Suite("s", "", (SuiteTask("click-test", 1),)).task_names == ["click-test"]


def test_unknown_expert():
    with pytest.raises(UnknownExpertError, match="no expert for task 'drag-box'"):
        get_expert("drag-box")


def _expert(task: str):
    return get_expert(task)(SimpleNamespace(task=task))


@pytest.mark.parametrize("task, goal, attr, value", [
    ("click-button-sequence", "Click button ONE, then click button TWO.", "labels", ["ONE", "TWO"]),
    ("click-test-2", "Click button ONE.", "labels", ["ONE"]),
    ("click-button", 'Click on the "Okay" button.', "text", "Okay"),
    ("click-tab-2", 'Switch between the tabs to find and click on the link "amet,".', "text", "amet,"),
    ("focus-text-2", "Focus into the 3rd input textbox.", "index", 2),
    ("focus-text", "Focus into the textbox.", "index", 0),
    ("enter-text-2", 'Type "kenda" in all upper case letters in the text input and press Submit.',
     "fields", {"#tt": "KENDA"}),
    ("login-user", 'Enter the username "tula" and the password "x9A" into the text fields and press login.',
     "fields", {"#username": "tula", "#password": "x9A"}),
    ("click-checkboxes", "Select nothing and click Submit.", "wanted", set()),
    ("click-checkboxes", "Select ab, X9y and click Submit.", "wanted", {"ab", "X9y"}),
    ("use-spinner", "Select -7 with the spinner and hit Submit.", "target", -7),
    ("grid-coordinate", "Click on the grid coordinate (-2,1).", "circle_id", "(-2,1)"),
])
def test_goal_parsing(task, goal, attr, value):
    expert = _expert(task)
    expert.reset(goal)
    assert getattr(expert, attr) == value


@pytest.mark.parametrize("goal, parts", [
    ("Click on a large red circle", ("large", "red", "circle")),
    ("Click on a small digit", ("small", "", "digit")),
    ("Click on a blue item", ("", "blue", "item")),
    ("Click on a Q", ("", "", "Q")),
    ("Click on a triangle", ("", "", "triangle")),
])
def test_click_shape_goal_parsing(goal, parts):
    expert = _expert("click-shape")
    expert.reset(goal)
    assert (expert.size, expert.color, expert.what) == parts


def test_click_shape_matching_rules():
    expert = _expert("click-shape")
    expert.reset("Click on a large green shape")
    assert expert._matches("triangle", "", "green", 20)
    assert not expert._matches("triangle", "", "green", 10)  # small
    assert not expert._matches("letter", "g", "green", 20)   # not a shape
    expert.reset("Click on a 7")
    assert expert._matches("digit", "7", "black", 10) and not expert._matches("digit", "1", "black", 10)


@pytest.mark.parametrize("task, goal", [
    ("click-button", "Click the blue button."),
    ("enter-text", 'Enter Kenda into the field.'),
    ("use-spinner", "Select ten with the spinner and hit Submit."),
    ("grid-coordinate", "Click on the grid coordinate (1;2)."),
])
def test_unparseable_goals_raise_goal_parse_error(task, goal):
    with pytest.raises(GoalParseError, match=task) as info:
        _expert(task).reset(goal)
    assert info.value.goal == goal


def test_policy_requires_reset_and_switches_experts():
    env = SimpleNamespace(task="click-test")
    policy = ExpertPolicy(env)
    with pytest.raises(Exception, match="before reset"):
        policy.act(None, [])
    policy.reset("Click the button.")
    assert type(policy.expert).__name__ == "ClickTest"
    env.task = "click-dialog"
    policy.reset('Close the dialog box by clicking the "x".')
    assert type(policy.expert).__name__ == "ClickDialog"
