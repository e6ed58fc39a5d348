"""The offline byte-level BPE tokenizer: round trips, special ids, save/load, transformers parity."""
from __future__ import annotations

import json
import string

import pytest

from autoui.actions import Action, format_action
from autoui.model.tokenizer import (
    DEFAULT_DIR,
    SPECIAL_TOKENS,
    ActionTokenizer,
    TokenizerError,
    loc_token,
)
from autoui.model.tokenizer_corpus import action_mix, harvest_miniwob, miniwob_html_dir

ODD_TEXTS = [
    "type héllo wörld ✓ 你好 🙂",
    "  leading and trailing  \n\t",
    "Goal: search for \"best pizza\" near 94043; then tap 12, 3456",
    "<image> </s> <s> <pad> <unk> are plain text here",
    "\\ backslash \\n and ; semicolons",
    "",
]


@pytest.fixture(scope="module")
def shipped() -> ActionTokenizer:
    return ActionTokenizer.load()


@pytest.fixture(scope="module", params=["digits", "loc"])
def small(request) -> ActionTokenizer:
    texts = [format_action(a, fmt, plan) for a, plan in action_mix(300, seed=5) for fmt in ("compact", "autoui")]
    return ActionTokenizer.build(texts + ["open the settings app"] * 5, vocab_size=400, coords=request.param)


def _action_texts(n: int = 400) -> list[str]:
    out = []
    for i, (action, plan) in enumerate(action_mix(n, seed=11)):
        for fmt in ("compact", "autoui"):
            out.append(format_action(action, fmt, plan if i % 2 else None))
    out += [format_action(Action.type("naïve café; back\\slash\nnew line"), fmt) for fmt in ("compact", "autoui")]
    return out


def test_shipped_round_trips_every_action_string_exactly(shipped):
    for text in _action_texts():
        assert shipped.decode(shipped.encode(text)) == text


@pytest.mark.parametrize("text", ODD_TEXTS)
def test_shipped_round_trips_unicode_and_whitespace(shipped, text):
    ids = shipped.encode(text)
    assert shipped.unk_id not in ids
    assert shipped.decode(ids) == text


def test_built_tokenizers_round_trip_and_never_emit_unk(small):
    printable = string.printable + "".join(chr(c) for c in range(0x80, 0x800, 7))
    for text in _action_texts(100) + ODD_TEXTS + [printable]:
        ids = small.encode(text)
        assert small.unk_id not in ids
        assert small.decode(ids) == text


def test_special_ids_are_fixed_and_never_come_from_text(shipped, small):
    for tok in (shipped, small):
        assert [tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id, tok.image_token_id] == [0, 1, 2, 3, 4]
        ids = tok.encode("look: <image></s><s><pad>")
        assert not set(ids) & tok.special_ids
        # decode drops control ids by default, keeps them on request
        assert tok.decode([tok.bos_id, *tok.encode("hi"), tok.eos_id]) == "hi"
        assert tok.decode([tok.image_token_id], skip_special_tokens=False) == "<image>"


def test_coordinate_schemes_tokenize_numbers_as_designed(small):
    ids = small.encode("tap 219 502")
    if small.coords == "loc":
        # one token per coordinate ("tap" itself may take more in a tiny vocabulary)
        assert small.id_to_token(ids[-2]) == loc_token(219) and small.id_to_token(ids[-1]) == " 502"
        assert len(small.encode("tap 219 502")) == len(small.encode("tap")) + 2
        assert small.vocab_size == 400 + 1001
    else:  # every digit is its own token, whatever BPE learned
        assert [small.id_to_token(i) for i in ids][-3:] == ["5", "0", "2"]
        assert small.vocab_size == 400


def test_save_load_and_transformers_give_the_same_ids(small, tmp_path):
    from transformers import PreTrainedTokenizerFast

    small.save(tmp_path)
    again = ActionTokenizer.load(tmp_path)
    assert again.coords == small.coords and again.vocab_size == small.vocab_size
    hf_file = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    hf_dir = PreTrainedTokenizerFast.from_pretrained(str(tmp_path))
    assert (hf_dir.pad_token_id, hf_dir.bos_token_id, hf_dir.eos_token_id) == (small.pad_id, small.bos_id, small.eos_id)
    assert hf_dir.convert_tokens_to_ids("<image>") == small.image_token_id
    for text in _action_texts(50) + ODD_TEXTS[:3]:
        ids = small.encode(text)
        assert again.encode(text) == ids
        assert hf_file(text, add_special_tokens=False)["input_ids"] == ids
        assert hf_dir.decode(ids, clean_up_tokenization_spaces=False) == text


def test_shipped_files_are_loadable_and_described():
    config = json.loads((DEFAULT_DIR / "tokenizer_config.json").read_text())
    assert config["autoui_coords"] in ("digits", "loc")
    tok = ActionTokenizer.load(DEFAULT_DIR)
    assert 2000 <= tok.vocab_size <= 4096
    assert [tok.id_to_token(i) for i in range(len(SPECIAL_TOKENS))] == list(SPECIAL_TOKENS)


def test_model_config_adopts_the_tokenizer(shipped):
    from autoui.model.config import load_preset

    config = load_preset("tiny").with_tokenizer(shipped)
    assert config.decoder.vocab_size == shipped.vocab_size
    assert config.image_token_id == shipped.image_token_id and config.eos_token_id == shipped.eos_id


def test_bad_inputs_raise_clear_errors(tmp_path, shipped):
    with pytest.raises(TokenizerError, match="coords"):
        ActionTokenizer.build(["x"], 500, coords="pixels")
    with pytest.raises(TokenizerError, match="vocab_size"):
        ActionTokenizer.build(["x"], 100)
    with pytest.raises(TokenizerError, match="no tokenizer.json"):
        ActionTokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="cannot read"):
        ActionTokenizer.load(tmp_path)
    with pytest.raises(TokenizerError, match="out of range"):
        shipped.decode([shipped.vocab_size])
    with pytest.raises(TokenizerError, match="string"):
        shipped.encode(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TokenizerError):
        loc_token(1001)


def test_miniwob_text_is_harvested_from_the_installed_package():
    html_dir = miniwob_html_dir()
    if html_dir is None:
        pytest.skip("miniwob is not installed")
    texts = harvest_miniwob(html_dir)
    assert len(texts) > 1000
    assert any("click Submit" in t for t in texts)
    assert not any(t.startswith("#") or "<" in t for t in texts)
