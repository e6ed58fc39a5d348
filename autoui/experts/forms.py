"""Experts for form tasks: text fields, passwords, checkboxes, radio options and spinners.

Each expert is a checklist read afresh at every step: the first unmet item (a field without
its text, a box in the wrong state) gives the next action, and Submit comes last.
"""
from __future__ import annotations

from autoui.actions import Action
from autoui.experts import register
from autoui.experts.base import Expert, ExpertError

_QUOTED = r'"([^"]+)"'


class _FormExpert(Expert):
    """Fill `self.fields` (selector -> text) in order, then tap `self.submit`."""

    submit = "#subbtn"

    def next_action(self) -> Action:
        for selector, text in self.fields.items():
            action = self.fill(selector, text)
            if action is not None:
                return action
        return self.tap(self.submit)


@register
class EnterText(_FormExpert):
    """enter-text: 'Enter "Kenda" into the text field and press Submit.'"""

    tasks = ("enter-text",)

    def parse_goal(self, goal: str) -> None:
        text = self.match(rf"Enter {_QUOTED} into the text field and press Submit\.", "'Enter \"...\" into the text field ...'")[1]
        self.fields = {"#tt": text}


@register
class EnterText2(_FormExpert):
    """enter-text-2: 'Type "kenda" in all upper case letters in the text input and press Submit.'"""

    tasks = ("enter-text-2",)

    def parse_goal(self, goal: str) -> None:
        m = self.match(
            rf"Type {_QUOTED} in all (upper|lower) case letters in the text input and press Submit\.",
            "'Type \"...\" in all upper|lower case letters ...'",
        )
        self.fields = {"#tt": m[1].upper() if m[2] == "upper" else m[1].lower()}


@register
class EnterPassword(_FormExpert):
    """enter-password: 'Enter the password "ab1" into both text fields and press submit.'"""

    tasks = ("enter-password",)

    def parse_goal(self, goal: str) -> None:
        pw = self.match(rf"Enter the password {_QUOTED} into both text fields and press submit\.", "'Enter the password \"...\" ...'")[1]
        self.fields = {"#password": pw, "#verify": pw}


@register
class LoginUser(_FormExpert):
    """login-user: 'Enter the username "kenda" and the password "ab1" into the text fields and press login.'"""

    tasks = ("login-user",)

    def parse_goal(self, goal: str) -> None:
        m = self.match(
            rf"Enter the username {_QUOTED} and the password {_QUOTED} into the text fields and press login\.",
            "'Enter the username \"...\" and the password \"...\" ...'",
        )
        self.fields = {"#username": m[1], "#password": m[2]}


@register
class ClickCheckboxes(Expert):
    """click-checkboxes: 'Select abc, x1 and click Submit.' / 'Select nothing and click Submit.'"""

    tasks = ("click-checkboxes",)

    def parse_goal(self, goal: str) -> None:
        names = self.match(r"Select (.*) and click Submit\.", "'Select a, b and click Submit.'")[1]
        # Names are alphanumeric, so ", " only ever separates them.
        self.wanted = set() if names == "nothing" else set(names.split(", "))

    def next_action(self) -> Action:
        boxes = self.js(
            """() => Array.from(document.querySelectorAll('#boxes label')).map(
                 (l) => [l.textContent.trim(), l.querySelector('input').checked])"""
        )
        missing = self.wanted - {name for name, _ in boxes}
        if missing:
            raise ExpertError(f"{self.task}: no checkbox named {sorted(missing)} (goal {self.goal!r})")
        for i, (name, checked) in enumerate(boxes):
            if checked != (name in self.wanted):
                return self.tap("#boxes label input", index=i)
        return self.tap("#subbtn")


@register
class ClickOption(Expert):
    """click-option: 'Select abc and click Submit.' (one radio button)."""

    tasks = ("click-option",)

    def parse_goal(self, goal: str) -> None:
        self.name = self.match(r"Select (\w+) and click Submit\.", "'Select <name> and click Submit.'")[1]

    def next_action(self) -> Action:
        index = self.js(
            """(name) => Array.from(document.querySelectorAll('#boxes label')).findIndex(
                 (l) => l.textContent.trim() === name && !l.querySelector('input').checked)""",
            self.name,
        )
        if index >= 0:
            return self.tap("#boxes label input", index=index)
        return self.tap("#subbtn")


@register
class UseSpinner(Expert):
    """use-spinner: 'Select -3 with the spinner and hit Submit.' (tap the arrows, then Submit)."""

    tasks = ("use-spinner",)

    def parse_goal(self, goal: str) -> None:
        self.target = int(self.match(r"Select (-?\d+) with the spinner and hit Submit\.", "'Select N with the spinner ...'")[1])

    def next_action(self) -> Action:
        raw = self.field_value("#spinner")
        try:
            value = int(raw or 0)
        except ValueError:
            raise ExpertError(f"{self.task}: spinner shows {raw!r}, not a whole number") from None
        if value < self.target:
            return self.tap(".ui-spinner-up")
        if value > self.target:
            return self.tap(".ui-spinner-down")
        return self.tap("#subbtn")
