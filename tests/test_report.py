"""Trajectory reports: the action is drawn where it happened and the HTML is self-contained."""
import numpy as np

from autoui.actions import Action
from autoui.report import ReportEpisode, ReportStep, draw_action, write_report


def test_tap_is_drawn_at_the_tap_point():
    img = np.full((210, 160, 3), 255, np.uint8)
    out = np.asarray(draw_action(img, Action.tap(0.25, 0.5), scale=2))
    assert out.shape == (420, 320, 3)
    red = (out[..., 0] > 200) & (out[..., 1] < 80) & (out[..., 2] < 80)
    ys, xs = np.nonzero(red)
    assert abs(ys.mean() - 105) < 3 and abs(xs.mean() - 160) < 3


def test_report_is_self_contained_html(tmp_path):
    img = np.zeros((50, 40, 3), np.uint8)
    eps = [ReportEpisode("click-button seed 1", "Click <Submit>", True,
                         [ReportStep(img, Action.tap(0.5, 0.5)), ReportStep(img, Action.type("hi"))]),
           ReportEpisode("scroll", "Scroll", False, [ReportStep(img, Action.scroll("up"))])]
    path = write_report(tmp_path / "r.html", eps)
    text = path.read_text()
    assert text.count("data:image/png;base64,") == 3
    assert "Click &lt;Submit&gt;" in text and "1/2 episodes succeeded" in text
    assert "type hi" in text
