from __future__ import annotations

import cv2
import numpy as np
import pytest

from ferkit import detect
from ferkit.benchmark import PHOTOS, match, photos, run_scenes
from ferkit.classify import FER_LANDMARKS
from ferkit.data import FERData
from ferkit.detect import DETECTORS, MAX_SHAPE_ERROR, create_detector, shape_error
from ferkit.errors import OptionError
from ferkit.recognize import EmotionRecognizer
from ferkit.results import Detection
from ferkit.scenes import Scene, compose_scene, random_scenes
from ferkit.track import iou

# Share of 200 PrivateTest faces found in composed scenes, measured with today's defaults (haar
# 0.59, centerface 0.96, 4 detections framing part of a face; yunet, when added, 0.89 and 3); the
# floors leave room for library updates, not for regressions.
RECALL_FLOOR = {"haar": 0.5, "centerface": 0.9, "yunet": 0.8}


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detector_finds_the_astronaut(name: str, astronaut_bgr: np.ndarray) -> None:
    detector = create_detector(name)
    (face,) = detector(astronaut_bgr)
    assert iou(face.box, (177, 67, 93, 93)) > 0.5  # where her face is (checked by eye)
    assert detector(astronaut_bgr[:, :, 1].copy())[0].box == pytest.approx(face.box, abs=12)  # gray input too
    if detector.takes_gray:  # the pipeline hands it the grey frame it made for the crops: same answer
        assert detector(cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)) == [face]
    assert detector(np.full((480, 640, 3), 128, np.uint8)) == []
    (zoomed,) = create_detector(name, zoom=2)(astronaut_bgr)  # found by both searches, kept once
    assert iou(zoomed.box, face.box) > 0.8
    if detector.finds_landmarks:  # eyes above the nose above the mouth, image-left before image-right, all in the box
        (left_eye, right_eye), nose, (left_mouth, right_mouth) = face.landmarks[:2], face.landmarks[2], face.landmarks[3:]
        assert left_eye[0] < nose[0] < right_eye[0] and left_mouth[0] < nose[0] < right_mouth[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
        x, y, w, h = face.box
        assert all(x < px < x + w and y < py < y + h for px, py in face.landmarks)
    else:
        assert face.landmarks is None


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detector_recall_on_scenes_of_fer_faces(name: str, fer: FERData) -> None:
    detector = create_detector(name)
    faces = fer.split("PrivateTest").pixels[:200]
    found = false_alarms = 0
    for k in range(0, 200, 4):
        scene, boxes = compose_scene(faces[k : k + 4])
        for det in detector(scene):
            hit = any(iou(det.box, b) > 0.4 for b in boxes)
            found += hit
            false_alarms += not hit
    assert found >= RECALL_FLOOR[name] * 200 and false_alarms <= 5


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_min_face_size(name: str, fer: FERData) -> None:
    scene, _ = compose_scene(fer.split("PrivateTest").pixels[:4], size=144)
    assert create_detector(name, min_size=200)(scene) == []


def test_unknown_detector_and_zoom() -> None:
    with pytest.raises(OptionError, match="unknown detector 'yolo'"):
        create_detector("yolo")
    with pytest.raises(OptionError, match="zoom must be 1 or more"):
        create_detector("centerface", zoom=0.5)


def test_nms_keeps_the_best_of_each_overlapping_group_and_every_lone_box() -> None:
    """The lowest-scored box is kept where nothing better overlaps it: once it was always dropped
    (shifted to score 0, which OpenCV's threshold of 0 refuses), a lone face with it."""
    boxes = np.array([[0, 0, 100, 100], [10, 5, 100, 100], [300, 300, 40, 40]], float)
    assert sorted(detect.nms(boxes, np.array([0.9, 0.5, 0.2]))) == [0, 2]
    assert sorted(detect.nms(boxes, np.array([-1.0, 2.0, -3.0]))) == [1, 2]  # Haar's weights can be negative
    assert detect.nms(boxes[2:], np.array([0.4])).tolist() == [0]
    assert detect.nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []
    # A box within a better one (IoU 0.16) or around it (0.25) is dropped with `centres`, a face beside it is not.
    boxes = np.array([[0, 0, 100, 100], [40, 40, 40, 40], [-50, -50, 200, 200], [90, 0, 100, 100]], float)
    assert sorted(detect.nms(boxes, np.array([0.9, 0.5, 0.4, 0.3]))) == [0, 1, 2, 3]
    assert sorted(detect.nms(boxes, np.array([0.9, 0.5, 0.4, 0.3]), centres=True)) == [0, 3]


def test_a_zoomed_search_finds_the_small_faces_of_a_group_photo(fer: FERData, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three rows of twelve 48 px faces in a photo 1876 px wide: searched at 640 px they are 16 px
    and lost (measured when added: none found; YuNet's second opinion, at 1280 px, finds 6 by its
    sure finds and 16 with the less sure ones CenterFace agrees with); second looks at the unsure
    places find more (15 when added, 18 with YuNet's sure finds, 21 with the agreed ones too);
    `detect_zoom=2` searches it at 1280 px as well and finds them (35 of 36, no false alarm)."""
    faces = fer.split("PrivateTest").pixels[:36]
    rows = [compose_scene(faces[k : k + 12], size=48, gap=100) for k in (0, 12, 24)]
    photo, height = np.vstack([image for image, _ in rows]), rows[0][0].shape[0]
    boxes = [(x, y + i * height, w, h) for i, (_, row) in enumerate(rows) for x, y, w, h in row]
    for zoom, looks, least, most in ((1, 0, 12, 20), (1, detect.LOOK_MOST, 19, detect.LOOK_MOST + 9), (2, detect.LOOK_MOST, 33, 36)):
        monkeypatch.setattr(detect, "LOOK_MOST", looks)
        found = EmotionRecognizer(detect_zoom=zoom).predict(photo)
        hits = len(match(boxes, found))
        assert least <= hits <= most and len(found) - hits <= 1, (zoom, looks, hits, len(found))


@pytest.mark.parametrize("name, floor", [("haar", 0.8), ("centerface", 0.95), ("yunet", 0.95)])
def test_detector_on_lfw_faces_and_non_faces(name: str, floor: float) -> None:
    """scikit-image's LFW subset: 100 real faces and 100 non-face patches, enlarged into scenes of 5.
    Measured when added: haar 87 faces / 1 false alarm, centerface 100 / 0 (1 today, a box kept by its
    landmarks' face shape at score 0.26), yunet 100 / 0."""
    from skimage import data

    patches = (data.lfw_subset() * 255).round().astype(np.uint8)
    detector = create_detector(name)

    def count(images: np.ndarray) -> int:
        return sum(len(detector(compose_scene(images[k : k + 5], size=120, gap=60)[0])) for k in range(0, len(images), 5))

    assert count(patches[:100]) >= floor * 100
    assert count(patches[100:]) <= 3


# The first 40 scenes of `ferkit benchmark detect` (seed 0): 30-300 px faces, turned, cut by the
# edge, on flat, noisy, gradient and photo backgrounds, darker and brighter (98 faces). Measured
# with the model of commit ce40de9: haar found 39, 72% of them labelled as their original (85% with
# the model before, whose answers moved less with the crop), 6 false alarms; centerface (turned
# upright) 97, 80%, none (96 without YuNet's second opinion, 95 without mirrored second looks either,
# 89 without second looks, 83 without the unsure faces whose landmarks have a face's shape too);
# yunet 68, 82%, none.
SCENE_FLOORS = {"haar": (0.33, 0.65, 0.3), "centerface": (0.92, 0.75, 0.05), "yunet": (0.6, 0.75, 0.05)}  # recall, agreement where found, false alarms per scene


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_recall_and_framing_on_composed_scenes(name: str, fer: FERData) -> None:
    """Faces at known places are found (`benchmark.finds`) and, once found, labelled as
    the classifier labels the original 48x48 face: a broken detector, box mapping, landmark or
    alignment (centerface's crops are aligned by default) fails it."""
    test = fer.split("PrivateTest")
    recognizer = EmotionRecognizer(detector=name)
    r = run_scenes(recognizer, random_scenes(test.pixels, 40, seed=0, photos=photos(*PHOTOS)))
    reference = recognizer.classifier.predict_proba(test.pixels[r.faces]).argmax(1)
    agree = (np.array(r.labels) == reference)[r.found].mean()
    recall, most_agree, most_false = SCENE_FLOORS[name]
    assert r.found.mean() >= recall and agree >= most_agree and r.false_alarms <= most_false * r.images, (r.found.mean(), agree, r.false_alarms)


def test_shape_error_measures_a_face_shape_whatever_its_turn_and_size(astronaut_bgr: np.ndarray) -> None:
    a = np.radians(25)
    moved = FER_LANDMARKS @ (3 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])).T + (200, 90)
    upside_down = FER_LANDMARKS[[3, 4, 2, 0, 1]]  # mouth where the eyes are
    errors = shape_error(np.stack([FER_LANDMARKS, moved, upside_down]))
    assert errors[:2] == pytest.approx([0, 0], abs=1e-9) and errors[2] > 5
    (face,) = create_detector("centerface")(astronaut_bgr)
    assert shape_error(np.array([face.landmarks]))[0] < MAX_SHAPE_ERROR


def test_unsure_places_are_kept_by_their_shape_or_a_second_look(fer: FERData, monkeypatch: pytest.MonkeyPatch) -> None:
    """CenterFace's low-scoring detections whose landmarks have a face's shape, and second looks at
    the places it is less sure of still, find more of the composed faces without a false alarm
    (measured on these 40 scenes: 83 of 98 from the threshold, 89 with the shapes, 96 with the
    second looks too, 95 of them without mirrored windows; YuNet's second opinion is left out). Without
    either is the same search's detections from the threshold: a box scoring it is never suppressed by one scoring less."""
    scenes = list(random_scenes(fer.split("PrivateTest").pixels, 40, seed=0, photos=photos(*PHOTOS)))
    monkeypatch.setattr(detect, "SECOND_OPINION", False)
    detector = create_detector("centerface")
    counts = np.zeros((3, 2), int)  # (second looks, shapes, neither) x (faces found, false alarms)

    def add(row: int, scene: Scene, kept: list[Detection]) -> None:
        n = len(match(scene.boxes, kept))
        counts[row] += n, len(kept) - n

    for scene in scenes:
        add(0, scene, detector(scene.image))
    monkeypatch.setattr(detect, "LOOK_MOST", 0)
    for scene in scenes:
        detections = detector(scene.image)
        assert all(d.score >= detector.min_score * detect.UNSURE_SHARE for d in detections)
        add(1, scene, detections)
        add(2, scene, [d for d in detections if d.score >= detector.min_score])
    assert counts[0, 0] >= counts[1, 0] + 4 and counts[1, 0] >= counts[2, 0] + 3, counts
    assert counts[0, 1] <= counts[1, 1] <= counts[2, 1], counts


def test_mirrored_candidates_land_where_the_face_is(astronaut_bgr: np.ndarray) -> None:
    """A mirror image's candidates, moved back, box the face where the image's own do, with each
    eye and mouth corner on its own side again."""
    detector = create_detector("centerface")
    boxes, scores, lx, ly = detector.candidates(astronaut_bgr, 1.0, 1.0)
    mboxes, mscores, mlx, mly = detect.mirrored(detector.candidates(cv2.flip(astronaut_bgr, 1), 1.0, 1.0), astronaut_bgr.shape[1])
    best, mbest = scores.argmax(), mscores.argmax()
    assert iou(tuple(boxes[best]), tuple(mboxes[mbest])) > 0.8
    assert np.abs(lx[best] - mlx[mbest]).max() < 4 and np.abs(ly[best] - mly[mbest]).max() < 4
    assert mlx[mbest, 0] < mlx[mbest, 2] < mlx[mbest, 1]  # image-left eye, nose, image-right eye


def test_a_second_look_keeps_what_the_mirrored_window_finds(fer: FERData, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three PublicTest faces of `ferkit benchmark detect --split PublicTest --seed 1` that
    CenterFace scores too low in the window but keeps mirrored (scenes 31, 144 and 176): found with
    LOOK_MIRROR and not without, with no false alarm in their scenes. YuNet's second opinion is left
    out: it finds one of them too."""
    scenes = list(random_scenes(fer.split("PublicTest").pixels, 177, seed=1, photos=photos(*PHOTOS)))
    chosen = [(scenes[31], 3), (scenes[144], 0), (scenes[176], 0)]
    monkeypatch.setattr(detect, "SECOND_OPINION", False)
    detector = create_detector("centerface")
    for mirror in (True, False):
        monkeypatch.setattr(detect, "LOOK_MIRROR", mirror)
        for scene, face in chosen:
            found = detector(scene.image)
            hits = match(scene.boxes, found)
            assert (face in hits) == mirror and len(hits) == len(found)


def test_a_box_within_or_around_a_better_one_is_dropped(fer: FERData, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two scenes of `ferkit benchmark detect --split PublicTest --seed 1` where CenterFace also
    boxes part of a face it found (scenes 204 and 428, IoU under NMS's 0.3): the final NMS with
    `centres` drops that box and keeps the face; the plain NMS keeps both, a false alarm."""
    scenes = list(random_scenes(fer.split("PublicTest").pixels, 429, seed=1, photos=photos(*PHOTOS)))
    detector = create_detector("centerface")
    plain, faces = detect.nms, {}
    for centres in (True, False):
        if not centres:
            monkeypatch.setattr(detect, "nms", lambda boxes, scores, overlap=0.3, centres=False: plain(boxes, scores, overlap))
        for k in (204, 428):
            found = detector(scenes[k].image)
            hits = match(scenes[k].boxes, found)
            assert faces.setdefault(k, sorted(hits)) == sorted(hits) and len(found) - len(hits) == (0 if centres else 1), (centres, found)


def faces_found(scenes: list[Scene], chosen: tuple[int, ...], monkeypatch: pytest.MonkeyPatch, setting: str,
                values: tuple[object, ...]) -> dict[tuple[object, int], int]:
    """How many faces of each chosen scene the default detector finds with a `detect` setting at each
    value, {(value, scene): faces}, checking that it boxes nothing else there."""
    counts = {}
    for value in values:
        monkeypatch.setattr(detect, setting, value)
        detector = create_detector("centerface")
        for k in chosen:
            found = detector(scenes[k].image)
            hits = match(scenes[k].boxes, found)
            assert len(hits) == len(found), (setting, value, k, found)
            counts[value, k] = len(hits)
    return counts


def test_yunet_s_second_opinion_finds_close_crops(fer: FERData, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two close-cropped PublicTest faces of `ferkit benchmark detect --split PublicTest --seed 1`
    (scenes 115 and 239) that CenterFace scores under its floors and YuNet finds on the image
    enlarged: found with SECOND_OPINION and not without, with no false alarm in their scenes."""
    scenes = list(random_scenes(fer.split("PublicTest").pixels, 240, seed=1, photos=photos(*PHOTOS)))
    counts = faces_found(scenes, (115, 239), monkeypatch, "SECOND_OPINION", (True, False))
    assert all(counts[True, k] == counts[False, k] + 1 for k in (115, 239)), counts


def test_yunet_s_less_sure_finds_are_kept_where_centerface_agrees(fer: FERData, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two PublicTest faces of `ferkit benchmark detect --split PublicTest --seed 1` half hidden by
    hands (scenes 280 and 471, 135 and 288 px) that no rule of CenterFace's keeps and YuNet scores
    under OPINION_SCORE, where CenterFace's search scored a place of a face's shape: found with
    OPINION_FLOOR and not with the sure finds alone, with no false alarm in their scenes."""
    scenes = list(random_scenes(fer.split("PublicTest").pixels, 472, seed=1, photos=photos(*PHOTOS)))
    agreed, sure = detect.OPINION_FLOOR, detect.OPINION_SCORE
    counts = faces_found(scenes, (280, 471), monkeypatch, "OPINION_FLOOR", (agreed, sure))
    assert all(counts[agreed, k] == 1 and counts[sure, k] == 0 for k in (280, 471)), counts
