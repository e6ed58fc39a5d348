"""Word pages: a training-only term that makes each image token name the word drawn under it.

Why: `train/probe_words.py` showed that the 14-px vision tower can learn to tell MiniWoB's 169
random words apart (62% in 3,000 steps) when a head on the token under each word must name
it, while the full agent, trained on one tap per screen, never does (docs/train.md sections
11-17). This term gives the agent's training that same direct signal: every step it renders
`pages` synthetic pages of words from a closed vocabulary (MiniWoB's `lorem_words` by default)
at the model's input size, runs them through the vision tower and projector (the features
the decoder reads), and a small head on the token under each word's centre must name the
word (cross-entropy). Pages are drawn from (seed, step, micro-batch, rank), so a resumed run
sees the pages an uninterrupted one would.

The head is the only new parameter. It lives beside the model (its own optimizer group, saved
in the trainer state for resume), never in the saved model, so serving is unchanged.

Target `pieces` (docs/train.md section 19) asks for the decoder's own words instead: the token
under each *word piece* (as the tokenizer splits the word inside a goal, quoted or after a
space) must be nearest, by cosine, to that piece's input embedding among all the tokenizer's
pieces. Image tokens and goal tokens then meet in one space, where a layer-0 attention head
can match a goal's pieces to the patches that show them. Its only parameter is a temperature;
the embedding table is read, never moved.
"""
from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from autoui.model.preprocess import ScreenPreprocessor
from autoui.train.config import WORD_PAGE_TARGETS
from autoui.train.regrid import grid_side

FONT = "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"
COLORS = ((0, 0, 0), (0, 0, 238), (60, 60, 60))  # text, links, grey labels
REF_SIZE, REF_FONT_PX = 224, 14  # MiniWoB's 10-px text at the area view's 1.4x on a 224-px input


def lorem_words() -> list[str]:
    """MiniWoB's own word list (`ui_utils.lorem_words`), lower case, punctuation stripped, sorted."""
    from autoui.envs.miniwob import html_dir

    js = (html_dir() / "common" / "ui_utils.js").read_text()
    start = js.index("lorem_words = [")
    return sorted({w.strip(",.").lower() for w in re.findall(r'"([^"]+)"', js[start:js.index("];", start)])})


def load_vocab(spec: str) -> list[str]:
    """'miniwob' (MiniWoB's lorem words) or a text file with one word per line -> sorted distinct words."""
    if spec == "miniwob":
        return lorem_words()
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"word-pages vocabulary: {spec!r} is neither 'miniwob' nor a file")
    words = sorted({w.strip() for w in path.read_text(encoding="utf-8").splitlines() if w.strip()})
    if len(words) < 2:
        raise ValueError(f"word-pages vocabulary {spec}: needs at least 2 distinct words, found {len(words)}")
    return words


def load_font(path: str, size: int) -> Any:
    from PIL import ImageFont

    if not Path(path).is_file():
        raise ValueError(f"font not found: {path} (Debian: apt-get install fonts-liberation)")
    return ImageFont.truetype(path, size)


class DrawnWord(NamedTuple):
    """A word drawn on a page: its text as drawn, its index in the vocabulary, its pen origin x, and
    its ink box (top, left, bottom, right), all in pixels of the page."""
    text: str
    k: int
    origin: float
    box: tuple[float, float, float, float]


def render_page(rng: random.Random, words: list[str], font: Any, size: int) -> tuple[Any, list[DrawnWord]]:
    """Lines of random words on a white size x size page -> (PIL image, the words drawn)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw, items = ImageDraw.Draw(img), []
    line = font.size
    y = rng.randint(0, max(1, line * 5 // 7))
    while y < size - line - 2:
        x = rng.randint(0, max(1, size // 11))
        while True:
            k = rng.randrange(len(words))
            word = words[k].capitalize() if rng.random() < 0.2 else words[k]
            left, top, right, bottom = draw.textbbox((x, y), word, font=font)
            if right > size - 2:
                break
            draw.text((x, y), word, font=font, fill=rng.choice(COLORS))
            items.append(DrawnWord(word, k, float(x), (float(top), float(left), float(bottom), float(right))))
            x = right + rng.randint(max(1, line * 2 // 7), max(2, line * 6 // 7))
        y += rng.randint(line * 17 // 14, line * 30 // 14)
    return img, items


def _pages(rng: random.Random, n: int, words: list[str], font: Any, pre: ScreenPreprocessor,
           points: Callable[[DrawnWord], Iterable[tuple[float, float, int]]]) -> tuple[torch.Tensor, ...]:
    """n pages -> (pixels [n, 3, S, S] normalised by `pre`, as screenshots are, then for every
    (y px, x px, label) that `points` gives for each drawn word: its page, y, x normalised, label)."""
    pixels, rows, size = [], [], pre.image_size
    for i in range(n):
        img, items = render_page(rng, words, font, size)
        pixels.append(pre(img)[0])
        rows += [(i, y / size, x / size, label) for w in items for y, x, label in points(w)]
    page, y, x, label = zip(*rows) if rows else ((), (), (), ())
    return (torch.stack(pixels), torch.tensor(page, dtype=torch.long), torch.tensor(y, dtype=torch.float32),
            torch.tensor(x, dtype=torch.float32), torch.tensor(label, dtype=torch.long))


def page_batch(rng: random.Random, n: int, words: list[str], font: Any, pre: ScreenPreprocessor) -> tuple[torch.Tensor, ...]:
    """n pages of `pre.image_size` px -> (pixels, page of each word, y, x of its box's centre
    normalised to the page, word index)."""
    def centre(w: DrawnWord) -> list[tuple[float, float, int]]:
        top, left, bottom, right = w.box
        return [((top + bottom) / 2, (left + right) / 2, w.k)]

    return _pages(rng, n, words, font, pre, centre)


def word_pieces(rng: random.Random, text: str, tokenizer: Any) -> list[tuple[int, int, int]]:
    """The pieces `text` becomes inside a goal -> [(token id, first char, end char)] within `text`.
    Goals name a word quoted ('the link "amet"') or after a space ('Select amet from'); the two split
    differently ('am', 'et' / 'Ġam', 'et'), so each call picks one at random."""
    quoted = rng.random() < 0.5
    shown = f'"{text}"' if quoted else f" {text}"
    enc = tokenizer.encode(shown, add_special_tokens=False)
    out = []
    for tid, (a, b) in zip(enc.ids, enc.offsets):
        a, b = max(a - 1, 0), min(b - 1, len(text))  # both forms put one character before the word
        if b > a:
            out.append((tid, a, b))
    return out


def piece_batch(rng: random.Random, n: int, words: list[str], font: Any, pre: ScreenPreprocessor,
                tokenizer: Any) -> tuple[torch.Tensor, ...]:
    """n pages -> (pixels, page of each word piece, y, x of the piece's centre normalised, token id)."""
    def pieces(w: DrawnWord) -> list[tuple[float, float, int]]:
        y = (w.box[0] + w.box[2]) / 2
        return [(y, w.origin + (font.getlength(w.text[:a]) + font.getlength(w.text[:b])) / 2, tid)
                for tid, a, b in word_pieces(rng, w.text, tokenizer)]

    return _pages(rng, n, words, font, pre, pieces)


def centre_cells(y: torch.Tensor, x: torch.Tensor, side: int) -> torch.Tensor:
    """Normalised centres -> the row-major index of the token holding each on a side x side grid."""
    return (y * side).long().clamp(0, side - 1) * side + (x * side).long().clamp(0, side - 1)


@dataclass(frozen=True)
class WordPageSpec:
    weight: float
    pages: int = 4  # pages per micro-batch (~37 words each at 224 px)
    vocab: str = "miniwob"
    font: str = FONT
    target: str = "words"  # "words": an MLP head names the word; "pieces": the decoder's piece embeddings

    def __post_init__(self) -> None:
        if self.pages < 1:
            raise ValueError(f"word pages per step must be >= 1, got {self.pages}")
        if self.target not in WORD_PAGE_TARGETS:
            raise ValueError(f"word-pages target must be one of {WORD_PAGE_TARGETS}, got {self.target!r}")


class WordPageLoss:
    """`loss(key)` renders pages drawn from `key`, encodes them with the model, and scores the head."""

    def __init__(self, model: Any, spec: WordPageSpec, device: torch.device | str = "cpu", tokenizer: Any = None):
        if spec.target == "pieces" and tokenizer is None:
            raise ValueError("the word-pages target 'pieces' needs the model's tokenizer")
        self.spec, self.model, self.words = spec, model, load_vocab(spec.vocab)
        self.tokenizer = None if tokenizer is None else getattr(tokenizer, "backend", tokenizer)
        self.pre, self.side = ScreenPreprocessor.from_config(model.config), grid_side(model)
        self.font = load_font(spec.font, max(6, round(REF_FONT_PX * self.pre.image_size / REF_SIZE)))
        if spec.target == "pieces":  # a temperature for the cosine logits, CLIP's starting value
            self.head = nn.ParameterDict({"log_scale": nn.Parameter(torch.tensor(math.log(1 / 0.07), device=device))})
        else:
            d = model.config.decoder.hidden_size
            self.head = nn.Sequential(nn.Linear(d, 256), nn.GELU(), nn.Linear(256, len(self.words))).to(device)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.head.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.head.load_state_dict(state)

    def batch(self, key: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
        rng = random.Random("word-pages:" + ":".join(str(k) for k in key))
        if self.spec.target == "pieces":
            return piece_batch(rng, self.spec.pages, self.words, self.font, self.pre, self.tokenizer)
        return page_batch(rng, self.spec.pages, self.words, self.font, self.pre)

    def logits(self, pixels: torch.Tensor, page: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Class logits [M, C] for the words (C: vocabulary words) or pieces (C: tokenizer pieces) at (page, y, x)."""
        dev = next(iter(self.head.parameters())).device
        feats = self.model.encode_images(pixels.to(dev))  # [P, N, D]
        tokens = feats[page.to(dev), centre_cells(y, x, self.side).to(dev)]  # [M, D]
        if self.spec.target == "words":
            return self.head(tokens.to(self.head[0].weight.dtype))
        table = self.model.decoder.embed_tokens.weight.detach()  # read, not trained, by this term
        cos = F.normalize(tokens.float(), dim=-1) @ F.normalize(table.float(), dim=-1).T
        return self.head["log_scale"].clamp(max=math.log(100.0)).exp() * cos

    def loss(self, key: tuple[int, ...]) -> torch.Tensor:
        pixels, page, y, x, k = self.batch(key)
        logits = self.logits(pixels, page, y, x)
        return F.cross_entropy(logits.float(), k.to(logits.device))

    @torch.no_grad()
    def accuracy(self, key: tuple[int, ...]) -> float:
        """% of the words (or pieces) on the pages drawn from `key` the head names right (no dropout to switch off)."""
        pixels, page, y, x, k = self.batch(key)
        pred = self.logits(pixels, page, y, x).argmax(-1).cpu()
        return 100.0 * float((pred == k).float().mean())
