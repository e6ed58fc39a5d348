"""Build the shipped tokenizer (models/tokenizer/) from the project's own text, offline.

The corpus (`autoui.model.tokenizer_corpus.corpus`) is action strings in both formats,
prompts in the model's exact layout, AITW-style goal templates and UI words, and text
harvested from the installed MiniWoB++ task pages. Byte-level BPE: any UTF-8 text
encodes, nothing is ever <unk>. Deterministic for a seed.

    .venv/bin/python train/build_tokenizer.py                   # -> models/tokenizer/
    .venv/bin/python train/build_tokenizer.py --coords digits --vocab 2048 --out /tmp/tok
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from autoui.actions import format_action
from autoui.model.tokenizer import COORD_SCHEMES, DEFAULT_DIR, ActionTokenizer
from autoui.model.tokenizer_corpus import action_mix, corpus

log = logging.getLogger("autoui.train.build_tokenizer")


def check(tok: ActionTokenizer, n: int = 2000) -> None:
    """Refuse to ship a tokenizer that does not round-trip actions exactly."""
    texts = [format_action(a, fmt, plan) for a, plan in action_mix(n, seed=123) for fmt in ("compact", "autoui")]
    texts += ["type héllo wörld ✓ 你好 🙂", "Goal: \t two  spaces\n"]
    bad = [t for t in texts if tok.decode(tok.encode(t)) != t]
    if bad:
        raise SystemExit(f"round trip failed for {len(bad)} strings, e.g. {bad[0]!r}")
    unk = sum(ids.count(tok.unk_id) for ids in tok.encode_batch(texts))
    if unk:
        raise SystemExit(f"{unk} <unk> tokens in the check strings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coords", choices=COORD_SCHEMES, default="digits",
                        help="coordinate tokens (see docs/tokenizer.md for the measurement)")
    parser.add_argument("--vocab", type=int, default=2048, help="learned BPE vocabulary (loc adds 1001 tokens)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    start = time.perf_counter()
    texts = list(corpus(seed=args.seed))
    log.info("corpus: %d strings, %d characters", len(texts), sum(map(len, texts)))
    tok = ActionTokenizer.build(texts, args.vocab, coords=args.coords)
    check(tok)
    tok.save(args.out)
    log.info("wrote %s (%d ids, coords=%s) in %.1f s", args.out, tok.vocab_size, tok.coords,
             time.perf_counter() - start)


if __name__ == "__main__":
    main()
