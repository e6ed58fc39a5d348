"""Training augmentation (autoui.train.augment): screen shifts that move taps along, typed-text swaps."""
from __future__ import annotations

import random

import numpy as np
import pytest

from autoui.actions import Action
from autoui.data.samples import Sample
from autoui.train.augment import Augment, drop_history, random_like, shift_screen, swap_typed_text, translate


def _sample(goal="Enter \"Kasey\" into the text field and press Submit.", target=None, history=(), epoch=0):
    image = np.full((210, 160, 3), 255, np.uint8)
    image[100:110, 40:50] = (255, 0, 0)  # a red square around (105, 45)
    return Sample(episode_id="miniwob/enter-text/7", step_id=len(history), dataset="miniwob", image=image,
                  goal=goal, history=tuple(history), plan=(), target=target or Action.tap(105 / 210, 45 / 160),
                  ui_positions=np.array([[100 / 210, 40 / 160, 10 / 210, 10 / 160]], np.float32), epoch=epoch)


def _red_centre(image: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero((image[..., 0] == 255) & (image[..., 1] == 0))
    return float(ys.mean()), float(xs.mean())


def test_translate_fills_with_the_border_colour():
    img = np.zeros((4, 5, 3), np.uint8)
    img[1:3, 1:4] = 9
    out = translate(img, 1, -1)
    assert out.shape == img.shape and (out[0] == 0).all() and (out[:, -1] == 0).all()
    assert (out[2:4, 0:3] == 9).all()


def test_shift_moves_the_screen_and_the_taps_together():
    s = _sample(history=[Action.tap(0.2, 0.3), Action.scroll("down")])
    moved = 0
    for seed in range(20):
        a = shift_screen(s, random.Random(seed), 0.25)
        if a is s:
            continue
        moved += 1
        cy, cx = _red_centre(a.image)
        ty, tx = a.target.touch_yx
        assert abs(ty * 210 - (cy + 0.5)) < 1.0 and abs(tx * 160 - (cx + 0.5)) < 1.0  # the tap still hits the square
        assert all(0.0 <= v <= 1.0 for v in (*a.history[0].touch_yx, ty, tx))
        dy, dx = ty - s.target.touch_yx[0], tx - s.target.touch_yx[1]
        assert a.history[0].touch_yx == pytest.approx((0.2 + dy, 0.3 + dx), abs=1e-6)
        assert a.history[1] == s.history[1]  # scrolls keep Auto-UI's fixed points
        assert a.ui_positions[0, :2] == pytest.approx(s.ui_positions[0, :2] + [dy, dx], abs=1e-6)
    assert moved >= 15


def test_shift_keeps_taps_near_an_edge_on_screen():
    s = _sample(target=Action.tap(0.995, 0.004))
    for seed in range(20):
        a = shift_screen(s, random.Random(seed), 0.3)
        y, x = a.target.touch_yx
        assert 0.0 <= y <= 1.0 and 0.0 <= x <= 1.0


def test_text_swap_keeps_shape_case_and_consistency():
    rng = random.Random(0)
    assert [c.isupper() for c in random_like("KaS3y!", rng)] == [c.isupper() for c in "KaS3y!"]
    assert random_like("ab-12", rng)[2] == "-" and random_like("ab-12", rng)[3:].isdigit()
    s = _sample(goal="Type \"tora\" in all upper case letters.", target=Action.type("TORA"),
                history=[Action.tap(0.3, 0.5)])
    a = swap_typed_text(s, random.Random(1), 1.0)
    new = a.target.typed_text
    assert new != "TORA" and new.isupper() and len(new) == 4
    assert a.goal == f"Type \"{new.lower()}\" in all upper case letters."
    login = _sample(goal="Enter the username \"bob\" and the password \"x9\" and press login.",
                    target=Action.type("x9"), history=[Action.tap(0.3, 0.5), Action.type("bob"), Action.tap(0.5, 0.5)])
    b = swap_typed_text(login, random.Random(2), 1.0)
    user, pwd = b.history[1].typed_text, b.target.typed_text
    assert user != "bob" and pwd != "x9" and pwd[1].isdigit()
    assert b.goal == f"Enter the username \"{user}\" and the password \"{pwd}\" and press login."
    assert swap_typed_text(login, random.Random(2), 0.0) is login
    not_quoted = _sample(goal="Enter the name of a fruit.", target=Action.type("apple"))
    assert swap_typed_text(not_quoted, random.Random(0), 1.0) is not_quoted


def test_augment_is_a_function_of_seed_sample_and_epoch():
    aug = Augment(shift=0.2, text_swap=1.0, seed=3)
    s = _sample(target=Action.type("Kasey"))
    a1, a2 = aug(s), aug(s)
    assert a1.goal == a2.goal and np.array_equal(a1.image, a2.image)
    later = [aug(_sample(target=Action.type("Kasey"), epoch=e)).goal for e in range(1, 6)]
    assert len(set(later + [a1.goal])) > 1  # a new pass draws anew
    assert Augment()(s) is s and not Augment().enabled
    with pytest.raises(ValueError):
        Augment(shift=0.6)
    with pytest.raises(ValueError):
        Augment(text_swap=1.5)


def test_history_drop_keeps_a_nonempty_suffix_of_the_history():
    taps = [Action.tap(0.1 * i, 0.5) for i in range(1, 7)]
    s = _sample(history=taps)
    kept = {len(drop_history(s, random.Random(k)).history) for k in range(200)}
    assert kept == set(range(1, 6))  # 1 .. len - 1, each drawn
    for k in range(20):
        d = drop_history(s, random.Random(k))
        assert d.history == tuple(taps[-len(d.history):]) and d.target == s.target and d.goal == s.goal
    one = _sample(history=taps[:1])
    assert drop_history(one, random.Random(0)) is one  # the last action always stays
    aug = Augment(history_drop=0.5, seed=1)
    dropped = sum(len(aug(_sample(history=taps, epoch=e)).history) < 6 for e in range(400))
    assert 150 < dropped < 250 and aug.enabled
    with pytest.raises(ValueError):
        Augment(history_drop=1.5)


def test_example_builder_applies_the_augmentation():
    from autoui.model.config import load_preset
    from autoui.model.tokenizer import ActionTokenizer
    from autoui.train.examples import ExampleBuilder

    tok = ActionTokenizer.load()
    cfg = load_preset("tiny").with_tokenizer(tok)
    s = _sample(target=Action.type("Kasey"))
    plain = ExampleBuilder(tok, cfg)(s)
    swapped = ExampleBuilder(tok, cfg, augment=Augment(text_swap=1.0))(s)
    assert plain["input_ids"] != swapped["input_ids"] and "Kasey" in tok.decode(plain["input_ids"])
    assert "Kasey" not in tok.decode(swapped["input_ids"])
