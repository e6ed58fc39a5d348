"""The text the shipped tokenizer is trained on, generated offline from the project itself.

Four sources, all deterministic for a seed:
- action strings in both formats (`autoui.actions`), with and without plans, drawn from
  `action_mix` (an AITW-like mix of taps, scrolls, typing, buttons and stops);
- prompts in the exact layout the model sees (`autoui.model.prompt.prompt_text`);
- AITW-style goals and UI words from templates written here;
- MiniWoB++ task text harvested from the installed `miniwob` package's HTML/JS (string
  literals: utterance fragments, button labels, the name/colour/word lists) plus
  templated MiniWoB goals.

`action_mix` doubles as the realistic action distribution for measuring tokens per
action (`train/measure_coord_tokens.py`).
"""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Iterator

from autoui.actions import Action, ActionType

# Shares of each action kind per AITW step, a rough reading of the dataset's published
# statistics (taps dominate, ~1 stop per ~8-step episode). Used only to weight the corpus
# and the token-count measurement, never as a claim about the data.
ACTION_MIX: dict[str, float] = {
    "tap": 0.52, "scroll": 0.12, "drag": 0.02, "type": 0.09, "back": 0.03,
    "home": 0.04, "enter": 0.06, "complete": 0.11, "impossible": 0.01,
}

APPS = ["Chrome", "Gmail", "Google Maps", "YouTube", "Settings", "Clock", "Calendar", "Camera", "Photos",
        "Play Store", "Contacts", "Messages", "Phone", "Files", "Drive", "Docs", "Sheets", "Keep Notes",
        "Calculator", "Spotify", "WhatsApp", "Instagram", "Facebook", "Twitter", "Reddit", "Netflix",
        "Amazon Shopping", "eBay", "Walmart", "Best Buy", "Target", "Costco", "Newegg", "Etsy", "Uber",
        "Lyft", "Zoom", "Slack", "Duolingo", "Weather", "Google Translate", "Google News", "TikTok"]
SITES = ["amazon.com", "ebay.com", "walmart.com", "bestbuy.com", "target.com", "costco.com", "newegg.com",
         "google.com", "wikipedia.org", "youtube.com", "nytimes.com", "espn.com", "booking.com", "yelp.com"]
PRODUCTS = ["logitech g pro", "macbook pro", "usb-c cable", "razer blade 15", "bose quietcomfort 35",
            "corsair k70", "duracell batteries", "ipad air", "samsung galaxy s21", "alienware aurora",
            "energizer aa", "lenovo thinkpad", "dell xps 13", "sony wh-1000xm4", "apple airpods",
            "nintendo switch", "kindle paperwhite", "jbl flip 5", "instant pot", "dyson v11", "razer kraken"]
QUERIES = ["weather in paris", "best coffee maker", "news about nasa", "flights to tokyo", "pizza near me",
           "how to tie a tie", "nba scores today", "stock price of tesla", "translate hello to spanish",
           "cheap hotels in rome", "movie times tonight", "recipe for pancakes", "time in london",
           "population of canada", "how tall is mount everest", "bus schedule", "gas station nearby"]
SETTINGS = ["wifi", "bluetooth", "airplane mode", "dark mode", "location", "battery saver", "do not disturb",
            "auto-rotate", "notifications", "hotspot", "nfc", "data saver", "night light", "vibration"]
CITIES = ["Paris", "London", "New York", "Tokyo", "Berlin", "San Francisco", "Sydney", "Toronto", "Mumbai",
          "Seoul", "Madrid", "Chicago", "Los Angeles", "Boston", "Seattle", "Rome", "Dubai", "Singapore"]
UI_WORDS = ["OK", "Cancel", "Allow", "Deny", "Install", "Uninstall", "Open", "Update", "Search", "Sign in",
            "Sign out", "Next", "Back", "Done", "Skip", "Accept", "Continue", "Settings", "Add to Cart",
            "Buy Now", "Checkout", "Menu", "Home", "Share", "Save", "Delete", "Edit", "More options",
            "Navigate up", "Clear", "Submit", "Send", "Reply", "Forward", "Search or type URL", "Close tab",
            "New tab", "Downloads", "History", "Bookmarks", "Wi-Fi", "Bluetooth", "Display", "Battery"]
AITW_TEMPLATES = [
    "Open the {app} app", "Open {app}", "Install {app}", "Uninstall {app}", "Open {app} and search for {query}",
    "Search for {query}", "Search for {query} on Google", "What's the weather like in {city}?",
    "What's the latest news in {city}?", "Go to {site}", "Go to {site}, search for \"{product}\", and select the first entry",
    "Search for \"{product}\" on {site}, select the first entry, and add it to the cart",
    "Clear the shopping cart on {site}", "Show me the shopping cart on {site}", "Turn {onoff} {setting}",
    "Open {setting} settings", "Check the battery level", "Set an alarm for {hour}:{minute} am",
    "Play the latest video from {city} travel on YouTube", "Find a {product} under ${price}",
    "How much does a {product} cost?", "Add {product} to the cart on {site}", "Read the latest email from {app}",
]
MINIWOB_TEMPLATES = [
    "Click on the \"{word}\" button.", "Click button ONE.", "Select {word}, {word2} and click Submit.",
    "Enter \"{word}\" into the text field and press Submit.", "Type \"{word}\" in the textbox and press Submit.",
    "Click on the {color} square.", "Click on the link \"{word}\".", "Select {word} from the list and click Submit.",
    "Find the email by {name} and reply to them with the text \"{word}\".", "Click on the tab #{n}.",
    "Expand the sections below, to find and click on the link \"{word}\".", "Select {n} and click Submit.",
    "Enter the username \"{name}\" and the password \"{word}\" into the text fields and press login.",
]
_LITERAL = re.compile(r"""'([^'\\\n]{1,80})'|"([^"\\\n]{1,80})\"""")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{1,20}")


def miniwob_html_dir() -> Path | None:
    """The `html/` folder of the installed `miniwob` package, or None when it is not installed."""
    try:
        import miniwob  # only its data files are used; nothing is executed
    except ImportError:
        return None
    path = Path(miniwob.__file__).resolve().parent / "html"
    return path if path.is_dir() else None


def harvest_miniwob(html_dir: Path) -> list[str]:
    """Human-readable string literals from MiniWoB++'s task pages and shared word lists."""
    files = sorted(html_dir.glob("miniwob/*.html")) + sorted(html_dir.glob("common/*.js"))
    found: dict[str, None] = {}  # ordered set: deterministic corpus order
    for path in files:
        for m in _LITERAL.finditer(path.read_text(encoding="utf-8", errors="replace")):
            text = m.group(1) or m.group(2)
            # keep prose and labels; skip selectors, markup, CSS and code fragments
            identifier = " " not in text and re.search(r"[-_/.]", text)  # CSS classes, ids, paths
            if _WORD.search(text) and not identifier and not re.search(r"[<>{}#=$]|px$|\(\)", text):
                found[text] = None
    return list(found)


def _fill(template: str, rng: random.Random, words: list[str]) -> str:
    return template.format(
        app=rng.choice(APPS), query=rng.choice(QUERIES), city=rng.choice(CITIES), site=rng.choice(SITES),
        product=rng.choice(PRODUCTS), setting=rng.choice(SETTINGS), onoff=rng.choice(["on", "off"]),
        hour=rng.randint(1, 12), minute=f"{rng.randint(0, 59):02d}", price=rng.randint(5, 2000),
        word=rng.choice(words), word2=rng.choice(words), name=rng.choice(words), n=rng.randint(1, 9),
        color=rng.choice(["red", "blue", "green", "yellow", "purple", "orange", "black", "white"]),
    )


def random_goal(rng: random.Random, words: list[str] | None = None) -> str:
    """One goal: AITW-style (70%) or MiniWoB-style (30%)."""
    words = words or UI_WORDS
    if rng.random() < 0.7:
        return _fill(rng.choice(AITW_TEMPLATES), rng, words)
    return _fill(rng.choice(MINIWOB_TEMPLATES), rng, words)


def _typed_text(rng: random.Random) -> str:
    pool = rng.choice([QUERIES, PRODUCTS, CITIES, SITES])
    return rng.choice(pool)


def random_action(rng: random.Random) -> Action:
    """One action drawn from ACTION_MIX; tap/drag points uniform over the screen."""
    kind = rng.choices(list(ACTION_MIX), weights=list(ACTION_MIX.values()))[0]
    if kind == "tap":
        return Action.tap(rng.random(), rng.random())
    if kind == "scroll":
        return Action.scroll(rng.choice(["up", "down", "up", "down", "left", "right"]))
    if kind == "drag":
        return Action.swipe((rng.random(), rng.random()), (rng.random(), rng.random()))
    if kind == "type":
        return Action.type(_typed_text(rng))
    return {"back": Action.back, "home": Action.home, "enter": Action.enter,
            "complete": Action.complete, "impossible": Action.impossible}[kind]()


def action_mix(n: int, seed: int = 0) -> list[tuple[Action, tuple[ActionType, ...]]]:
    """`n` (action, plan) pairs; the plan is the action's type plus up to 3 following types."""
    rng = random.Random(seed)
    actions = [random_action(rng) for _ in range(n + 3)]
    return [(a, tuple(b.action_type for b in actions[i:i + rng.randint(1, 4)])) for i, a in enumerate(actions[:n])]


def corpus(seed: int = 0, n_actions: int = 20_000, n_prompts: int = 6_000) -> Iterator[str]:
    """Every training string for the shipped tokenizer, in a deterministic order."""
    from autoui.actions import format_action
    from autoui.model.prompt import prompt_text

    rng = random.Random(seed)
    html_dir = miniwob_html_dir()
    harvested = harvest_miniwob(html_dir) if html_dir is not None else []
    words = [w for w in harvested if len(w) < 25] or UI_WORDS
    yield from harvested
    yield from UI_WORDS
    for action, plan in action_mix(n_actions, seed):
        for fmt in ("compact", "autoui"):
            yield format_action(action, fmt, plan if rng.random() < 0.5 else None)
    for _ in range(n_prompts):
        history = [random_action(rng) for _ in range(rng.randint(0, 8))]
        yield prompt_text(random_goal(rng, words), history, rng.choice(["compact", "autoui"]))
