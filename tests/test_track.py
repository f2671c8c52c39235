from __future__ import annotations

import cv2
import numpy as np

from ferkit.data import EMOTIONS
from ferkit.detect import create_detector
from ferkit.results import Detection, Face
from ferkit.track import Follower, Tracker, iou


def face(x: int, y: int, label: str, p: float = 0.9) -> Face:
    rest = (1 - p) / 6
    probs = {e: (p if e == label else rest) for e in EMOTIONS}
    return Face((x, y, 100, 100), 1.0, label, p, probs)


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == 50 / 150
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


def test_ids_follow_moving_faces_whatever_the_order() -> None:
    tracker = Tracker()
    first = tracker.update([face(0, 0, "happy"), face(300, 0, "sad")])
    assert [f.track_id for f in first] == [1, 2]
    for step in range(1, 6):  # both move right 10 px a frame; detector order swaps
        out = tracker.update([face(300 + 10 * step, 0, "sad"), face(10 * step, 0, "happy")])
        assert [f.track_id for f in out] == [2, 1]


def test_smoothing_stops_one_frame_flicker() -> None:
    tracker = Tracker(smoothing=0.6)
    for _ in range(5):
        tracker.update([face(0, 0, "happy")])
    out = tracker.update([face(2, 0, "surprise", 0.7)])  # a single odd frame
    assert out[0].label == "happy" and out[0].track_id == 1
    assert abs(sum(out[0].probabilities.values()) - 1) < 1e-6
    for _ in range(5):
        out = tracker.update([face(2, 0, "surprise", 0.9)])
    assert out[0].label == "surprise"  # a lasting change does come through


def test_lost_faces_keep_their_id_briefly_then_expire() -> None:
    tracker = Tracker(max_missed=3)
    tracker.update([face(0, 0, "happy")])
    for _ in range(3):
        tracker.update([])
    assert tracker.update([face(5, 5, "happy")])[0].track_id == 1
    for _ in range(4):
        tracker.update([])
    assert tracker.update([face(5, 5, "happy")])[0].track_id == 2


def panning(photo: np.ndarray, frames: int = 10, step: int = 6) -> list[np.ndarray]:
    """A camera panning right over a real photo: its face moves `step` px left a frame."""
    return [np.ascontiguousarray(photo[0:400, 60 + step * i : 460 + step * i]) for i in range(frames)]


def test_follower_keeps_boxes_on_a_moving_face(astronaut_bgr: np.ndarray) -> None:
    detector = create_detector("haar")
    frames = panning(astronaut_bgr)
    first = detector(frames[0])
    assert len(first) == 1
    follower = Follower()
    follower.reset(cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY), first)
    for frame in frames[1:]:
        truth = detector(frame)[0].box  # a full search of this frame
        (moved,) = follower(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        assert iou(moved.box, truth) > 0.8
    assert iou(first[0].box, truth) < 0.5  # the first box is stale by the end: following is what kept up


def test_follower_drops_faces_that_are_gone(astronaut_bgr: np.ndarray) -> None:
    gray = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    (face,) = create_detector("haar")(gray)
    follower = Follower()
    follower.reset(gray, [face])
    assert len(follower(gray)) == 1
    x, y, w, h = face.box
    covered = gray.copy()
    covered[max(0, y - h) : y + 2 * h, max(0, x - w) : x + 2 * w] = 128  # the face left
    assert follower(covered) == []
    follower.reset(gray, [Detection((-60, -60, 100, 100), 1.0)])  # mostly outside the frame
    assert follower(gray) == []


def test_follower_moves_landmarks_with_the_box(astronaut_bgr: np.ndarray) -> None:
    """Followed faces keep their landmarks, shifted as their box is, so their crops stay aligned between searches."""
    first, later = panning(astronaut_bgr, frames=4)[::3]
    (face,) = create_detector("centerface")(first)
    follower = Follower()
    follower.reset(cv2.cvtColor(first, cv2.COLOR_BGR2GRAY), [face])
    (moved,) = follower(cv2.cvtColor(later, cv2.COLOR_BGR2GRAY))
    dx, dy = moved.box[0] - face.box[0], moved.box[1] - face.box[1]
    assert abs(dx + 18) <= 2 and abs(dy) <= 2  # the photo moved 18 px left
    assert np.allclose(np.array(moved.landmarks) - face.landmarks, (dx, dy))
