"""Experts for the one-tap and few-tap clicking tasks (buttons, links, dialogs, tabs, widgets)."""
from __future__ import annotations

import re

from autoui.actions import Action
from autoui.experts import register
from autoui.experts.base import Expert, ExpertError

_QUOTED = r'"(?P<text>[^"]+)"'


@register
class ClickTest(Expert):
    """click-test: 'Click the button.' One button, anywhere."""

    tasks = ("click-test",)

    def next_action(self) -> Action:
        return self.tap("#subbtn")


@register
class ClickButtonSequence(Expert):
    """click-test-2 / click-button-sequence: 'Click button ONE[, then click button TWO].'"""

    tasks = ("click-test-2", "click-button-sequence")

    def parse_goal(self, goal: str) -> None:
        self.match(r"Click button \w+(, then click button \w+)?\.", "'Click button ONE[, then click button TWO].'")
        self.labels = re.findall(r"button (\w+)", goal)

    def next_action(self) -> Action:
        # Buttons are absolutely placed and may overlap: `tap` finds an uncovered point.
        if self.steps >= len(self.labels):
            raise ExpertError(f"{self.task}: all buttons {self.labels} tapped, yet the episode goes on")
        return self.tap("#area button", text=self.labels[self.steps])


@register
class ClickButton(Expert):
    """click-button: 'Click on the "Okay" button.' (any button with that exact text counts)."""

    tasks = ("click-button",)

    def parse_goal(self, goal: str) -> None:
        self.text = self.match(rf"Click on the {_QUOTED} button\.", "'Click on the \"...\" button.'")["text"]

    def next_action(self) -> Action:
        return self.tap("#area button", text=self.text)


@register
class ClickLink(Expert):
    """click-link / click-tab-2*: click the link with the quoted text, switching tabs to find it."""

    tasks = ("click-link", "click-tab-2", "click-tab-2-easy", "click-tab-2-hard")

    def parse_goal(self, goal: str) -> None:
        pattern = rf"(Click on the link|Switch between the tabs to find and click on the link) {_QUOTED}\."
        self.text = self.match(pattern, "'... click on the link \"...\".'")["text"]

    def next_action(self) -> Action:
        if self.point("#area .alink", text=self.text) is not None:
            return self.tap("#area .alink", text=self.text)
        # Not visible: open the first tab whose panel holds such a link.
        tab = self.js(
            """(text) => {
                 const panels = Array.from(document.querySelectorAll('#area > div[id^="tabs-"]'));
                 for (const p of panels) {
                   const links = Array.from(p.querySelectorAll('.alink'));
                   if (links.some((a) => a.textContent.trim() === text)) return p.id;
                 }
                 return null;
               }""",
            self.text,
        )
        if tab is None:
            raise ExpertError(f"{self.task}: no link {self.text!r} on the page")
        return self.tap(f'#area ul a[href="#{tab}"]')


@register
class ClickDialog(Expert):
    """click-dialog: 'Close the dialog box by clicking the "x".'"""

    tasks = ("click-dialog",)

    def next_action(self) -> Action:
        return self.tap(".ui-dialog-titlebar button")


@register
class ClickDialog2(Expert):
    """click-dialog-2: 'Click the button in the dialog box labeled "OK"|"Cancel"|"x".'"""

    tasks = ("click-dialog-2",)

    def parse_goal(self, goal: str) -> None:
        self.label = self.match(rf"Click the button in the dialog box labeled {_QUOTED}\.", "'... labeled \"OK\".'")["text"]

    def next_action(self) -> Action:
        if self.label == "x":
            return self.tap(".ui-dialog-titlebar button")
        return self.tap(".ui-dialog-buttonpane button", text=self.label)


@register
class ClickTab(Expert):
    """click-tab: 'Click on Tab #2.'"""

    tasks = ("click-tab",)

    def parse_goal(self, goal: str) -> None:
        self.label = "Tab #" + self.match(r"Click on Tab #(\d)\.", "'Click on Tab #N.'")[1]

    def next_action(self) -> Action:
        return self.tap("#area ul a", text=self.label)


@register
class ClickWidget(Expert):
    """click-widget: 'Click on a "checkbox" widget.' (radio, checkbox, text, textarea, button)."""

    tasks = ("click-widget",)

    def parse_goal(self, goal: str) -> None:
        self.kind = self.match(rf"Click on a {_QUOTED} widget\.", "'Click on a \"...\" widget.'")["text"]

    def next_action(self) -> Action:
        return self.tap(f'#area .widget [data-type="{self.kind}"]')


@register
class ClickCollapsible(Expert):
    """click-collapsible(-nodelay): open the section, then press Submit."""

    tasks = ("click-collapsible", "click-collapsible-nodelay")

    def next_action(self) -> Action:
        is_open = self.js("() => document.querySelectorAll('.ui-accordion-content-active').length > 0")
        if not is_open:
            return self.tap("#area h3")
        return self.tap("#subbtn")


@register
class ClickColor(Expert):
    """click-color: 'Click on the red colored box.' (the goal names the colour even when the page shows a swatch)."""

    tasks = ("click-color",)

    def parse_goal(self, goal: str) -> None:
        self.color = self.match(r"Click on the ([a-z]+) colored box\.", "'Click on the <colour> colored box.'")[1]

    def next_action(self) -> Action:
        return self.tap(f'#area .color[data-color="{self.color}"]')


@register
class FocusText(Expert):
    """focus-text / focus-text-2: 'Focus into the textbox.' / 'Focus into the 2nd input textbox.'"""

    tasks = ("focus-text", "focus-text-2")

    def parse_goal(self, goal: str) -> None:
        m = self.match(r"Focus into the (?:(\d)(?:st|nd|rd|th) input )?textbox\.", "'Focus into the [Nth input ]textbox.'")
        self.index = int(m[1]) - 1 if m[1] else 0

    def next_action(self) -> Action:
        return self.tap("#area input", index=self.index)
