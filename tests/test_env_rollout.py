"""The episode loop, online evaluation, the policy registry and the eval-miniwob command."""
from __future__ import annotations

import json
import re

import pytest

from autoui.actions import Action
from autoui.policy import UnknownPolicyError, make_policy, policy_names, register_policy

pytestmark = pytest.mark.browser  # skipped without Chromium (tests/conftest.py)

from autoui.envs.miniwob import MiniWoBEnv
from autoui.envs.rollout import failure_reason, evaluate, format_table, run_episode
from autoui.envs.suite import parse_suite


class ButtonPolicy:
    """Clicks the button named in the goal; with `wrong=True` clicks another one, then gives up."""

    def __init__(self, env, wrong=False):
        self.env, self.wrong, self.goals = env, wrong, []

    def reset(self, goal):
        self.goals.append(goal)

    def act(self, obs, history):
        wanted = re.search(r'"(.*)"', obs.goal).group(1)
        picks = [b for b in self.env.elements("button") if (b.text == wanted) != self.wrong]
        return Action.tap(*picks[0].center) if picks else Action.impossible()


class RaisingPolicy:
    def reset(self, goal):
        pass

    def act(self, obs, history):
        raise RuntimeError("no idea")


@pytest.fixture(scope="module")
def env():
    e = MiniWoBEnv("click-button")
    yield e
    e.close()


def test_run_episode_records_steps_and_success(env):
    result = run_episode(env, ButtonPolicy(env), "click-button", 4, max_steps=3)
    assert result.success and result.reward == 1.0 and len(result.steps) == 1
    obs, action = result.steps[0]
    assert obs.goal == result.goal and action.is_tap and not obs.done
    assert result.final_obs.done and result.seconds_per_step > 0 and result.error is None
    assert len(result.step_seconds) == 1 and 0 < result.step_seconds[0] <= result.seconds_per_step


def test_policy_errors_fail_the_episode_with_a_reason(env):
    result = run_episode(env, RaisingPolicy(), "click-button", 4, max_steps=3)
    assert not result.success and result.steps == [] and "RuntimeError: no idea" in result.error


def test_step_limit_ends_the_loop(env):
    class Idle:
        def reset(self, goal):
            pass

        def act(self, obs, history):
            return Action.tap(0.99, 0.99)  # empty corner: never ends the task

    result = run_episode(env, Idle(), "click-button", 4, max_steps=2)
    assert not result.success and len(result.steps) == 2 and result.error is None
    assert failure_reason(result) == "no verdict within max_steps"


def test_evaluate_reports_rates_per_task():
    suite = parse_suite({"name": "t", "tasks": [{"task": "click-button", "max_steps": 2},
                                                 {"task": "click-test", "max_steps": 2}]})
    results = evaluate(lambda: MiniWoBEnv(), lambda e: ButtonPolicy(e), suite, episodes=3, seed=0,
                       tasks=["click-button"], progress=False)
    assert list(results["tasks"]) == ["click-button"]
    assert results["tasks"]["click-button"] == {"episodes": 3, "success_rate": 100.0, "mean_steps": 1.0,
                                                "max_steps_used": 1, "failures": 0, "error_examples": []}
    assert results["mean_success"] == 100.0 and results["seconds_per_step"] > 0
    step = results["step_ms"]
    assert step["n"] == 3 and 0 < step["median"] <= step["p95"] and step["mean"] > 0
    assert "click-button" in format_table(results) and "median" in format_table(results)


def test_step_percentiles():
    from autoui.envs.rollout import step_percentiles

    assert step_percentiles([]) == {"median": 0.0, "p95": 0.0, "mean": 0.0, "n": 0}
    got = step_percentiles([0.010, 0.020, 0.030, 0.100])
    assert got["median"] == 25.0 and got["mean"] == 40.0 and got["n"] == 4 and 30.0 < got["p95"] <= 100.0


def test_policy_registry():
    assert "expert" in policy_names()
    with pytest.raises(UnknownPolicyError, match="unknown policy"):
        make_policy("nope", None)

    @register_policy("test-button")
    def _factory(env, **options):
        return ButtonPolicy(env, **options)

    assert isinstance(make_policy("test-button", None, wrong=True), ButtonPolicy)


def test_eval_miniwob_command(tmp_path, capsys):
    from autoui.cli import main

    out = tmp_path / "eval.json"
    code = main(["eval-miniwob", "--policy", "expert", "--tasks", "click-button,click-link", "--episodes", "2",
                 "--seed", "7", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert set(data["tasks"]) == {"click-button", "click-link"} and data["policy"] == "expert"
    for t in data["tasks"].values():
        assert t["episodes"] == 2 and 0 <= t["success_rate"] <= 100
    assert "mean" in capsys.readouterr().out
    assert main(["eval-miniwob", "--tasks", "no-such-task", "--episodes", "1"]) == 2


def test_eval_miniwob_shows_a_model_the_view_it_learned_on(tmp_path, caplog):
    """A model whose screen.json says "area" is evaluated on the play area; --view overrides it."""
    import torch

    from autoui.cli import main
    from autoui.data.screen import write_model_screen
    from autoui.model.config import load_preset
    from autoui.model.tokenizer import ActionTokenizer
    from autoui.model.vlm import AutoUIModel

    tok = ActionTokenizer.load()
    torch.manual_seed(0)
    model_dir = tmp_path / "tiny"
    AutoUIModel(load_preset("tiny").with_tokenizer(tok)).save_pretrained(model_dir, tokenizer=tok)
    write_model_screen(model_dir, {"view": "area", "scale": 1.0})
    base = ["eval-miniwob", "--model", str(model_dir), "--tasks", "click-test", "--episodes", "1"]
    assert main([*base, "--json", str(tmp_path / "a.json")]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["view"] == "area"
    assert "learned on" not in caplog.text
    assert main([*base, "--view", "task", "--json", str(tmp_path / "t.json")]) == 0
    assert json.loads((tmp_path / "t.json").read_text())["view"] == "task"
    assert "learned on 'area' screens but the environment shows 'task'" in caplog.text
    # the experts play the same on either view
    code = main(["eval-miniwob", "--tasks", "click-button,focus-text-2", "--episodes", "3", "--view", "area",
                 "--json", str(tmp_path / "e.json")])
    data = json.loads((tmp_path / "e.json").read_text())
    assert code == 0 and data["view"] == "area" and data["mean_success"] == 100.0
