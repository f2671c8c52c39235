from __future__ import annotations

import numpy as np

from ferkit.annotate import COLORS, draw, draw_fps
from ferkit.data import EMOTIONS
from ferkit.results import Face


def test_draw_marks_the_face_in_its_emotion_colour() -> None:
    image = np.zeros((300, 400, 3), np.uint8)
    probs = {e: 0.0 for e in EMOTIONS} | {"sad": 1.0}
    f = Face((100, 120, 80, 80), 1.0, "sad", 1.0, probs, track_id=3)
    out = draw(image, [f])
    assert out.shape == image.shape and not image.any()  # the input is left as it was
    assert tuple(out[160, 100]) == COLORS["sad"]  # left edge of the box
    assert tuple(out[150, 140]) == (0, 0, 0)  # inside the box stays clear
    bars = draw(image, [f], show_all=True)
    assert (bars != out).any(axis=2).sum() > 500  # seven bars and their names
    gray = draw(image[:, :, 0], [f])
    assert gray.shape == (300, 400, 3)


def test_fps_counter_is_drawn() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    draw_fps(image, 59.9)
    assert image[:40, :150].any()
