"""An offline byte-level BPE tokenizer for prompts and action strings.

Built on the `tokenizers` library, so the saved `tokenizer.json` also loads in
transformers' `PreTrainedTokenizerFast(tokenizer_file=...)` with the same ids.

- Byte-level: every UTF-8 string encodes (no `<unk>` ever comes out of `encode`), and
  `decode(encode(s)) == s` exactly, including whitespace.
- Digits are always split one per token before BPE, so a number is spelled the same way
  wherever it appears (BPE would otherwise merge some numbers and not others).
- `coords="loc"` adds one dedicated token per compact-format coordinate, " 0" .. " 1000"
  (leading space included), as added tokens: "tap 219 502" is 3 tokens. They are ordinary
  text to every consumer, so round trips and the HF loader stay exact.
- Special tokens `<pad> <s> </s> <unk> <image>` take ids 0..4. `encode` treats their
  spellings inside user text as plain text, so a goal can never inject an image or eos id;
  callers insert control ids explicitly (see `autoui.model.prompt`).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable, Sequence

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

log = logging.getLogger("autoui.model.tokenizer")

PAD, BOS, EOS, UNK, IMAGE = "<pad>", "<s>", "</s>", "<unk>", "<image>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK, IMAGE)
COORD_SCHEMES: tuple[str, ...] = ("digits", "loc")
LOC_MAX = 1000
"""Compact-format coordinates are integers 0..LOC_MAX."""

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "models" / "tokenizer"
"""The shipped tokenizer (built by train/build_tokenizer.py); present in a source checkout."""


class TokenizerError(ValueError):
    """A tokenizer that cannot be built, loaded or used as asked (message says why)."""


def loc_token(value: int) -> str:
    """The text of the location token for compact coordinate `value` (0..1000)."""
    if not 0 <= value <= LOC_MAX:
        raise TokenizerError(f"location value must be in 0..{LOC_MAX}, got {value}")
    return f" {value}"


def _new_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


class ActionTokenizer:
    """A `tokenizers.Tokenizer` plus the ids and metadata autoui needs.

    Use `build` to train one, `load` to read a directory with `tokenizer.json`
    (our shipped one by default), `save` to write one.
    """

    def __init__(self, tokenizer: Tokenizer, coords: str = "digits"):
        if coords not in COORD_SCHEMES:
            raise TokenizerError(f"coords must be one of {COORD_SCHEMES}, got {coords!r}")
        self._tok = tokenizer
        self.coords = coords
        ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise TokenizerError(f"tokenizer lacks the special tokens {missing}; autoui needs {list(SPECIAL_TOKENS)}")
        self.pad_id, self.bos_id, self.eos_id = ids[PAD], ids[BOS], ids[EOS]
        self.unk_id, self.image_token_id = ids[UNK], ids[IMAGE]
        self.special_ids = frozenset(ids.values())
        # user text must never turn into control ids ("<image>" in a goal stays text)
        self._tok.encode_special_tokens = True

    # -- building ---------------------------------------------------------------------
    @classmethod
    def build(cls, corpus_iter: Iterable[str], vocab_size: int = 2048, coords: str = "digits",
              min_frequency: int = 2) -> "ActionTokenizer":
        """Train a byte-level BPE on `corpus_iter` (strings).

        `vocab_size` is the size of the learned vocabulary, special tokens and the 256
        byte symbols included; `coords="loc"` adds 1001 location tokens on top of it.
        """
        if coords not in COORD_SCHEMES:
            raise TokenizerError(f"coords must be one of {COORD_SCHEMES}, got {coords!r}")
        floor = 256 + len(SPECIAL_TOKENS)
        if vocab_size < floor:
            raise TokenizerError(f"vocab_size must be at least {floor} (bytes + specials), got {vocab_size}")
        tok = _new_tokenizer()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
            special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(corpus_iter, trainer=trainer)
        if coords == "loc":
            tok.add_tokens([AddedToken(loc_token(v), normalized=False, special=False) for v in range(LOC_MAX + 1)])
        log.info("built a %s tokenizer with %d tokens", coords, tok.get_vocab_size(with_added_tokens=True))
        return cls(tok, coords)

    # -- I/O ----------------------------------------------------------------------------
    @classmethod
    def load(cls, directory: str | Path | None = None) -> "ActionTokenizer":
        """Load `directory/tokenizer.json` (default: the shipped `models/tokenizer/`)."""
        directory = Path(directory) if directory is not None else DEFAULT_DIR
        path = directory / TOKENIZER_FILE
        if not path.is_file():
            raise TokenizerError(f"no {TOKENIZER_FILE} in {directory}")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises a bare Exception on bad JSON
            raise TokenizerError(f"cannot read {path}: {exc}") from exc
        coords = "digits"
        cfg_path = directory / CONFIG_FILE
        if cfg_path.is_file():
            coords = json.loads(cfg_path.read_text()).get("autoui_coords", "digits")
        return cls(tok, coords)

    def save(self, directory: str | Path) -> Path:
        """Write `tokenizer.json` plus a transformers-style `tokenizer_config.json`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._tok.encode_special_tokens = False  # not part of the file format; keep it neutral
        try:
            self._tok.save(str(directory / TOKENIZER_FILE))
        finally:
            self._tok.encode_special_tokens = True
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK,
            "extra_special_tokens": {"image_token": IMAGE},
            "clean_up_tokenization_spaces": False,
            "model_max_length": 1_000_000,
            "autoui_coords": self.coords,
        }
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        return directory

    # -- use ------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of ids (added location tokens included); ids are 0..vocab_size-1."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def backend(self) -> Tokenizer:
        """The underlying `tokenizers.Tokenizer`."""
        return self._tok

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without bos/eos (callers add control ids themselves)."""
        if not isinstance(text, str):
            raise TokenizerError(f"encode takes a string, got {type(text).__name__}")
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` for many strings at once (parallel in Rust)."""
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of `ids`; special tokens (pad, bos, eos, image) are dropped by default."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise TokenizerError(f"ids out of range 0..{self.vocab_size - 1}: {bad[:5]}")
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        """The id of one token string, or None."""
        return self._tok.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        """The token string of one id, or None."""
        return self._tok.id_to_token(token_id)

    def __repr__(self) -> str:
        return f"ActionTokenizer(vocab_size={self.vocab_size}, coords={self.coords!r})"
