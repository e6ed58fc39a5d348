"""`autoui predict` and `autoui.agent.predict_action`, end to end on a tiny random model."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autoui.actions import Action, ActionParseError, format_action
from autoui.agent import predict_action, read_history
from autoui.cli import main
from autoui.model.config import load_preset
from autoui.model.prompt import PromptLimits
from autoui.model.tokenizer import ActionTokenizer
from autoui.model.vlm import AutoUIModel

REPO = Path(__file__).resolve().parents[1]
W, H = 108, 240  # a small phone-shaped screenshot


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    tok = ActionTokenizer.load()
    torch.manual_seed(0)
    model = AutoUIModel(load_preset("tiny").with_tokenizer(tok))
    out = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(out, tokenizer=tok)
    return out


@pytest.fixture(scope="module")
def screen(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("screens") / "phone.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def forced_output(monkeypatch):
    """Make generation return the tokens of a chosen text; records the prompts it was given."""
    calls: list[torch.Tensor] = []
    tok = ActionTokenizer.load()

    def force(text: str) -> list[torch.Tensor]:
        def fake_generate(model, pixel_values, input_ids, max_new_tokens, eos_token_id, **runtime):
            assert pixel_values.shape == (1, 3, model.config.image_size, model.config.image_size)
            calls.append(input_ids)
            return torch.tensor([tok.encode(text) + [tok.eos_id]])

        monkeypatch.setattr("autoui.agent.generate_ids", fake_generate)  # the serving swap point
        return calls

    return force


def test_prints_the_forced_action_in_autoui_format(model_dir, screen, forced_output, capsys):
    forced_output("point type ; tap 250 500")
    code = main(["predict", "--model", str(model_dir), "--image", str(screen), "--goal", "open settings"])
    out = capsys.readouterr().out.strip()
    assert code == 0
    assert out == ('Action Plan: [DUAL_POINT,TYPE] ; Action Decision: "action_type": "DUAL_POINT", '
                   '"touch_point": "[0.25, 0.5]", "lift_point": "[0.25, 0.5]", "typed_text": ""')


def test_json_output_gives_pixels_of_the_input_image(model_dir, screen, forced_output, capsys):
    forced_output("tap 250 500")
    code = main(["predict", "--model", str(model_dir), "--image", str(screen), "--goal", "g", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["kind"] == "tap" and data["action"]["touch_yx"] == [0.25, 0.5]
    assert data["touch_px"] == [0.5 * W, 0.25 * H] and data["screen"] == {"width": W, "height": H}
    assert data["raw"] == "tap 250 500" and data["plan"] is None


def test_history_file_reaches_the_prompt(model_dir, screen, forced_output, tmp_path, capsys):
    calls = forced_output("back")
    history = tmp_path / "history.jsonl"
    history.write_text('"tap 100 200"\n' + json.dumps(Action.type("héllo").to_dict()) + "\nenter\n"
                       + json.dumps(format_action(Action.scroll("down"), "autoui")) + "\n")
    code = main(["predict", "--model", str(model_dir), "--image", str(screen), "--goal", "find it",
                 "--history", str(history)])
    assert code == 0 and '"action_type": "PRESS_BACK"' in capsys.readouterr().out
    prompt = ActionTokenizer.load().decode(calls[0][0].tolist())
    assert prompt == "Previous Actions: tap 100 200\ntype héllo\nenter\nswipe 200 500 800 500\nGoal: find it\nAction:"


def test_garbage_output_exits_2_and_shows_the_raw_text(model_dir, screen, forced_output, capsys):
    forced_output("tap the blue button please")
    code = main(["predict", "--model", str(model_dir), "--image", str(screen), "--goal", "g"])
    err = capsys.readouterr().err
    assert code == 2
    assert "not a valid action" in err and "tap the blue button please" in err and "Traceback" not in err


def test_bad_arguments_exit_2_with_one_line(model_dir, screen, tmp_path, capsys):
    bad_history = tmp_path / "h.json"
    bad_history.write_text('["tap 1 2", "fly away"]')
    cases = [
        ["--model", str(tmp_path / "missing"), "--image", str(screen)],
        ["--model", str(model_dir), "--image", str(tmp_path / "missing.png")],
        ["--model", str(model_dir), "--image", str(screen), "--history", str(bad_history)],
        ["--model", str(tmp_path), "--image", str(screen)],  # a directory without a model
    ]
    for args in cases:
        assert main(["predict", *args, "--goal", "g"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("autoui predict: error:") and "\n" not in err
    assert main(["predict", "--model", str(model_dir), "--image", str(screen), "--history", str(bad_history),
                 "--goal", "g"]) == 2
    assert "history entry 2" in capsys.readouterr().err


def test_read_history_accepts_lists_lines_and_dicts():
    assert read_history("") == []
    assert read_history('["tap 100 200", "back"]') == [Action.tap(0.1, 0.2), Action.back()]
    assert read_history("point ; tap 100 200\nhome") == [Action.tap(0.1, 0.2), Action.home()]
    with pytest.raises(ValueError, match="entry 1"):
        read_history("[42]")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_history("[1, 2")


def test_real_generation_runs_on_the_random_model(model_dir):
    """No monkeypatching: a random model gives some action or a parse error carrying its text."""
    model = AutoUIModel.from_pretrained(model_dir)
    tok = ActionTokenizer.load(model_dir)
    screen = np.zeros((2400, 1080, 3), np.uint8)
    try:
        pred = predict_action(model, tok, screen, "open the settings app", [Action.home()], "compact",
                              PromptLimits(max_target_tokens=16))
    except ActionParseError as exc:
        assert isinstance(exc.text, str)
    else:
        assert pred.new_tokens >= 1 and pred.letterbox.screen_h == 2400
        assert pred.autoui_text().count('"action_type"') == 1


def test_command_line_entry_point(model_dir, screen):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "autoui", "predict", "--model", str(model_dir), "--image",
                           str(screen), "--goal", "open settings", "--json", "--max-new-tokens", "16"],
                          capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    # a random model: either a valid action (exit 0, JSON) or a clear parse error (exit 2)
    assert proc.returncode in (0, 2), proc.stderr
    if proc.returncode == 0:
        assert "action_type" in json.loads(proc.stdout)["action"]
    else:
        assert "not a valid action" in proc.stderr and "Traceback" not in proc.stderr


def test_the_model_is_a_registered_policy(model_dir, forced_output, monkeypatch):
    from autoui.envs.base import Observation
    from autoui.policy import make_policy

    calls = forced_output("tap 250 500")
    policy = make_policy("model", None, model_path=str(model_dir))
    policy.reset("open settings")
    obs = Observation(screenshot=np.zeros((H, W, 3), np.uint8), goal="ignored", width=W, height=H)
    assert policy.act(obs, [Action.back()]) == Action.tap(0.25, 0.5)
    prompt = ActionTokenizer.load().decode(calls[0][0].tolist())
    assert prompt.endswith("Previous Actions: back\nGoal: open settings\nAction:")
    monkeypatch.setattr("autoui.agent.DEFAULT_MODEL_DIR", model_dir.parent / "no-model-here")
    with pytest.raises(ValueError, match="model_path"):
        make_policy("model", None)


def test_trained_format_comes_from_the_checkpoint(tmp_path):
    from autoui.agent import trained_format

    assert trained_format(tmp_path) == "compact"  # no train_config.json
    (tmp_path / "train_config.json").write_text('{"fmt": "autoui", "steps": 3}')
    assert trained_format(tmp_path) == "autoui"
    (tmp_path / "train_config.json").write_text("not json")
    assert trained_format(tmp_path, default="autoui") == "autoui"
    (tmp_path / "train_config.json").write_text('{"fmt": "yaml"}')
    assert trained_format(tmp_path) == "compact"


def test_serving_keeps_as_much_history_as_training(model_dir, tmp_path):
    import shutil

    from autoui.agent import trained_limits, trained_settings
    from autoui.policy import make_policy

    assert trained_settings(tmp_path) == {"fmt": "compact", "history": 8, "plan": 4}  # nothing saved
    (tmp_path / "train_config.json").write_text('{"fmt": "autoui", "history": 12, "plan": 2}')
    assert trained_settings(tmp_path) == {"fmt": "autoui", "history": 12, "plan": 2}
    assert trained_limits(tmp_path).max_history == 12
    (tmp_path / "train_config.json").write_text('{"history": -1, "plan": true}')  # nonsense: the defaults
    assert trained_settings(tmp_path) == {"fmt": "compact", "history": 8, "plan": 4}
    served = tmp_path / "served"
    shutil.copytree(model_dir, served)
    (served / "train_config.json").write_text('{"fmt": "compact", "history": 12}')
    policy = make_policy("model", None, model_path=served)
    assert policy.limits.max_history == 12 and policy.fmt == "compact"


def test_predict_cli_uses_the_trained_history(model_dir, screen, forced_output, tmp_path):
    import shutil

    served = tmp_path / "served"
    shutil.copytree(model_dir, served)
    (served / "train_config.json").write_text('{"fmt": "compact", "history": 10}')
    history = tmp_path / "history.txt"
    history.write_text("\n".join(["tap 100 100"] * 12))
    calls = forced_output("point done ; done")
    tok = ActionTokenizer.load()
    for extra, kept in (([], 10), (["--max-history", "3"], 3)):
        assert main(["predict", "--model", str(served), "--image", str(screen), "--goal", "g",
                     "--history", str(history), *extra]) == 0
        prompt = tok.decode(calls[-1][0].tolist())
        assert prompt.count("tap 100 100") == kept
