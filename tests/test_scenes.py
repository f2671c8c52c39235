from __future__ import annotations

import cv2
import numpy as np

from ferkit.data import FERData
from ferkit.scenes import FACE_SIZES, compose_scene, paste_face, random_scenes


def test_compose_scene_puts_each_face_in_its_box(fer: FERData) -> None:
    faces = fer.split("PrivateTest").pixels[:3]
    scene, boxes = compose_scene(faces, size=96, gap=40)
    assert scene.shape == (176, 448, 3) and boxes == [(40, 40, 96, 96), (176, 40, 96, 96), (312, 40, 96, 96)]
    for face, (x, y, w, h) in zip(faces, boxes):
        assert np.array_equal(scene[y : y + h, x : x + w, 1], cv2.resize(face, (w, h), interpolation=cv2.INTER_CUBIC))
    assert (scene[:40] == 128).all() and (scene[:, :40] == 128).all()


def test_paste_face_turns_about_the_centre_and_cuts_at_the_edge() -> None:
    face = np.zeros((48, 48), np.uint8)
    face[:, :24] = 255  # left half white
    canvas = np.full((100, 100), 128, np.uint8)
    paste_face(canvas, face, (-50, 10, 96, 96), angle=90)  # counter-clockwise: the white half ends at the bottom
    assert canvas[90, 20] == 255 and canvas[20, 20] == 0 and (canvas[:, 60:] == 128).all()


def test_random_scenes_are_repeatable_and_keep_faces_mostly_inside(fer: FERData) -> None:
    faces = fer.split("PrivateTest").pixels
    first, again = list(random_scenes(faces, 20, seed=3)), list(random_scenes(faces, 20, seed=3))
    assert all(np.array_equal(a.image, b.image) and a.boxes == b.boxes and a.faces == b.faces for a, b in zip(first, again))
    boxes = [box for scene in first for box in scene.boxes]
    assert all(scene.image.shape == (480, 640, 3) and 1 <= len(scene.boxes) <= 4 for scene in first)
    assert len(boxes) >= 30 and all(FACE_SIZES[0] <= side <= FACE_SIZES[1] for _, _, side, _ in boxes)
    assert all(-0.3 * s <= x <= 640 - 0.7 * s and -0.3 * s <= y <= 480 - 0.7 * s for x, y, s, _ in boxes)
    assert any(x < 0 or y < 0 or x + s > 640 or y + s > 480 for x, y, s, _ in boxes)  # some reach past the edge
    assert not np.array_equal(first[0].image, list(random_scenes(faces, 1, seed=4))[0].image)
