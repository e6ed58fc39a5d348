"""Task suites: named lists of MiniWoB++ tasks with a step limit each, kept as data.

A suite is a JSON file, `envs/miniwob/<name>.json` at the repository root:

    {"name": "default", "description": "...",
     "tasks": [{"task": "click-button", "max_steps": 5}, ...]}

`load_suite("default")` finds the file next to the package's checkout; a path to any JSON
file in that format works too. Task names are checked against the installed `miniwob`
package's task pages, so a typo fails at load time instead of in the middle of a run.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("autoui.envs.suite")

SUITES_DIR = Path(__file__).resolve().parents[2] / "envs" / "miniwob"
"""Where named suites live: `envs/miniwob/` at the root of the checkout holding this package."""


class SuiteError(ValueError):
    """A suite file that is missing, malformed or names an unknown task."""


class UnknownSuiteError(SuiteError, LookupError):
    """No suite of that name (and no such file)."""


class UnknownTaskError(SuiteError, LookupError):
    """A task name that is not in the suite or not a MiniWoB++ task."""


def miniwob_task_names() -> frozenset[str] | None:
    """Names of the MiniWoB++ tasks of the installed `miniwob` package; None (logged) if it is missing."""
    from autoui.envs.base import EnvError
    from autoui.envs.miniwob import list_tasks

    try:
        return frozenset(list_tasks())
    except EnvError as e:
        log.warning("task names not checked: %s", e)
        return None


@dataclass(frozen=True)
class SuiteTask:
    """One task of a suite: its MiniWoB++ name and the most actions an episode may take."""

    task: str
    max_steps: int

    def __post_init__(self) -> None:
        if not isinstance(self.task, str) or not self.task:
            raise SuiteError(f"task must be a non-empty string, got {self.task!r}")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise SuiteError(f"{self.task}: max_steps must be a positive integer, got {self.max_steps!r}")


@dataclass(frozen=True)
class Suite:
    """A named, ordered set of tasks (task names are unique)."""

    name: str
    description: str
    tasks: tuple[SuiteTask, ...]

    def __post_init__(self) -> None:
        if not self.tasks:
            raise SuiteError(f"suite {self.name!r} has no tasks")
        seen: set[str] = set()
        for t in self.tasks:
            if t.task in seen:
                raise SuiteError(f"suite {self.name!r} lists task {t.task!r} twice")
            seen.add(t.task)

    @property
    def task_names(self) -> list[str]:
        """Task names in suite order."""
        return [t.task for t in self.tasks]

    def get(self, task: str) -> SuiteTask:
        """The entry for `task`; UnknownTaskError when the suite does not list it."""
        for t in self.tasks:
            if t.task == task:
                return t
        raise UnknownTaskError(f"task {task!r} is not in suite {self.name!r}; it has: {', '.join(self.task_names)}")

    def select(self, tasks: list[str] | None) -> list[SuiteTask]:
        """The entries for `tasks` (all when None), checking each name."""
        return list(self.tasks) if not tasks else [self.get(t) for t in tasks]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what `parse_suite` reads)."""
        return {"name": self.name, "description": self.description,
                "tasks": [{"task": t.task, "max_steps": t.max_steps} for t in self.tasks]}


def list_suites() -> list[str]:
    """Names of the suites under `SUITES_DIR`."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.json"))


def parse_suite(data: Any, *, source: str = "<data>", check_tasks: bool = True) -> Suite:
    """Build a Suite from its JSON form; SuiteError (naming `source`) on any problem."""
    if not isinstance(data, dict):
        raise SuiteError(f"{source}: a suite must be a JSON object, got {type(data).__name__}")
    unknown_keys = set(data) - {"name", "description", "tasks"}
    if unknown_keys:
        raise SuiteError(f"{source}: unknown keys {sorted(unknown_keys)}")
    if not isinstance(data.get("name"), str) or not isinstance(data.get("tasks"), list):
        raise SuiteError(f"{source}: needs a string 'name' and a list 'tasks'")
    entries = []
    for i, item in enumerate(data["tasks"]):
        if not isinstance(item, dict) or set(item) != {"task", "max_steps"}:
            raise SuiteError(f"{source}: tasks[{i}] must be {{'task': ..., 'max_steps': ...}}, got {item!r}")
        entries.append(SuiteTask(item["task"], item["max_steps"]))
    suite = Suite(data["name"], str(data.get("description", "")), tuple(entries))
    known = miniwob_task_names() if check_tasks else None
    if known is not None:
        missing = [t for t in suite.task_names if t not in known]
        if missing:
            raise UnknownTaskError(f"{source}: not MiniWoB++ tasks: {', '.join(missing)}")
    return suite


def load_suite(name_or_path: str | Path, *, check_tasks: bool = True) -> Suite:
    """Load a suite by name (`envs/miniwob/<name>.json`) or from a JSON file path."""
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith(".json") or path.is_file()):
        path = SUITES_DIR / f"{text}.json"
        if not path.is_file():
            raise UnknownSuiteError(f"unknown suite {text!r}; known suites: {', '.join(list_suites()) or 'none'} "
                                    f"(in {SUITES_DIR}), or pass a path to a .json file")
    elif not path.is_file():
        raise UnknownSuiteError(f"suite file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SuiteError(f"{path}: not valid JSON: {e}") from None
    return parse_suite(data, source=str(path), check_tasks=check_tasks)


def add_suite_arguments(parser, *, episodes: int, seed: int) -> None:
    """The options every MiniWoB++ suite command shares: which tasks, how many seeds, which browser."""
    parser.add_argument("--suite", default="default", help="suite name (envs/miniwob/<name>.json) or JSON path")
    parser.add_argument("--tasks", default=None, help="comma-separated subset of the suite's tasks")
    parser.add_argument("--episodes", type=int, default=episodes, help="episodes per task (seeds S .. S+N-1)")
    parser.add_argument("--seed", type=int, default=seed, help="first seed S")
    parser.add_argument("--scale", type=float, default=1.0, help="device scale factor of the screenshots")
    parser.add_argument("--view", default=None, choices=["task", "area"],
                        help="what the screenshot shows: the whole 160x210 task (goal banner included) or the "
                             "160x160 play area below the banner (the goal stays text). Default: the view the "
                             "model was trained on (its screen.json), else task")
    parser.add_argument("--chromium", default=None,
                        help="Chromium executable (default: AUTOUI_CHROMIUM, /usr/bin/chromium)")
