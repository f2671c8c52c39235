from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferkit.benchmark import PHOTOS, match, photos
from ferkit.classify import crop_face, upright_face
from ferkit.data import EMOTIONS, FERData
from ferkit.detect import to_gray
from ferkit.recognize import VIEW_MARGINS, EmotionRecognizer, RecognizerConfig, recognize_source
from ferkit.scenes import compose_scene, random_scenes
from ferkit.sources import Images, Video
from ferkit.track import iou


@pytest.fixture(scope="module")
def recognizer() -> EmotionRecognizer:
    return EmotionRecognizer()


def test_astronaut_smiles(recognizer: EmotionRecognizer, astronaut_bgr: np.ndarray) -> None:
    faces = recognizer.predict(astronaut_bgr)
    assert len(faces) == 1
    face = faces[0]
    x, y, w, h = face.box
    assert 170 < x + w / 2 < 280 and 70 < y + h / 2 < 170  # her face, not the flag or the helmet
    assert sum(face.probabilities.values()) == pytest.approx(1, abs=1e-4)
    assert face.label == max(face.probabilities, key=face.probabilities.get) == "happy"
    assert recognizer.predict(astronaut_bgr[:, :, ::-1].copy(), color="rgb") == faces


def test_scenes_of_fer_faces_match_the_classifier(recognizer: EmotionRecognizer, fer: FERData) -> None:
    """Pipeline = detector + crop + classifier: in composed scenes of known faces, each face found
    gets its box, exactly the classifier's answer averaged over its four views (its crop turned
    upright by its landmarks, grown by 5% per side, each mirrored; one crop with --no-views), and
    mostly the classifier's answer on the original 48x48 face (the crop is not the original: 170 of
    193 agree with the model of commit ce40de9 with views, 168 with one crop, 169 with either for
    the model before: these faces are large, upright and on a flat background, where one crop is
    already framed well).

    FER2013's faces are tight crops without a head around them, hard for a detector: CenterFace
    found 193 of these 200 (4 more detections framed part of a face), the Haar cascade 118."""
    test = fer.split("PrivateTest")
    probs = recognizer.classifier.predict_proba(test.pixels[:200])
    one_view = EmotionRecognizer(views=False)
    agree = {True: 0, False: 0}
    found = false_alarms = 0
    for k in range(0, 200, 4):
        scene, boxes = compose_scene(test.pixels[k : k + 4])
        faces, single, detections = recognizer.predict(scene), one_view.predict(scene), recognizer.detector(scene)
        assert [f.box for f in faces] == [f.box for f in single] == [d.box for d in detections]
        if faces:
            crops = [np.stack([upright_face(scene[:, :, 0], d.box, d.landmarks, m) for d in detections]) for m in VIEW_MARGINS]  # the default detector gives landmarks
            views = sum(recognizer.classifier.predict_proba(c) + recognizer.classifier.predict_proba(c[:, :, ::-1].copy()) for c in crops)
            assert [f.label for f in faces] == [recognizer.labels[i] for i in views.argmax(1)]
            assert [f.label for f in single] == [recognizer.labels[i] for i in recognizer.classifier.predict_proba(crops[0]).argmax(1)]
        for face, one in zip(faces, single):
            hit = [i for i, box in enumerate(boxes) if iou(face.box, box) > 0.4]
            if not hit:
                false_alarms += 1
                continue
            found += 1
            agree[True] += face.label == recognizer.labels[probs[k + hit[0]].argmax()]
            agree[False] += one.label == recognizer.labels[probs[k + hit[0]].argmax()]
    assert found >= 0.9 * 200 and false_alarms <= 8
    assert agree[True] >= 0.8 * found and agree[False] >= 0.8 * found


def test_views_give_more_faces_their_label_in_benchmark_scenes(recognizer: EmotionRecognizer, fer: FERData) -> None:
    """Where the detector's box misses the face's square a little (turned faces, 30-300 px, busy
    backgrounds: the benchmark's scenes), averaging four views gives more faces their FER2013 label
    than one crop of the same detections: 241 against 236 of 343 faces in these 150 PublicTest
    scenes, measured with the model of commit ce40de9 (231 against 224 with the one before)."""
    test = fer.split("PublicTest")
    one_view = EmotionRecognizer(views=False)
    right = {True: 0, False: 0}
    for scene in random_scenes(test.pixels, 150, seed=1, photos=photos(*PHOTOS)):
        gray = to_gray(scene.image)
        detections = recognizer.detect(scene.image, gray)
        for views, r in ((True, recognizer), (False, one_view)):
            faces = r.classify(gray, detections)
            right[views] += sum(faces[j].label == EMOTIONS[test.labels[scene.faces[i]]] for i, j in match(scene.boxes, faces).items())
    assert right[True] >= right[False] + 3


def test_crops_are_turned_upright_by_landmarks_unless_told_not_to(recognizer: EmotionRecognizer, astronaut_bgr: np.ndarray) -> None:
    gray = to_gray(astronaut_bgr)
    (face,) = recognizer.detect(astronaut_bgr, gray)
    assert np.array_equal(recognizer.crop(gray, face), upright_face(gray, face.box, face.landmarks))
    assert np.array_equal(recognizer.crop(gray, replace(face, landmarks=None)), crop_face(gray, face.box))  # a detector without landmarks
    assert np.array_equal(EmotionRecognizer(align=False, margin=0.1).crop(gray, face), crop_face(gray, face.box, 0.1))


def test_no_face_no_result(recognizer: EmotionRecognizer) -> None:
    assert recognizer.predict(np.full((480, 640, 3), 200, np.uint8)) == []


def test_stream_searches_every_kth_frame_and_follows_between(recognizer: EmotionRecognizer, astronaut_bgr: np.ndarray) -> None:
    frames = [np.ascontiguousarray(astronaut_bgr[0:400, 60 + 6 * i : 460 + 6 * i]) for i in range(10)]  # panning camera
    searches = []
    stream = EmotionRecognizer().stream(detect_every=5)
    search = stream.recognizer.detector
    stream.recognizer.detector = lambda frame: searches.append(1) or search(frame)
    for frame in frames:
        (face,) = stream(frame)
        (truth,) = recognizer.predict(frame)  # a full search and classification of this frame alone
        assert face.track_id == 1 and iou(face.box, truth.box) > 0.8
        assert face.label == truth.label == "happy"
    assert len(searches) == 2


def test_inference_never_imports_torch() -> None:
    """Users who only run models install no torch: the pipeline and `ferkit predict` must not import it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from ferkit.cli import app\n"
        "from ferkit import EmotionRecognizer\n"
        "from ferkit.classify import ASSETS\n"
        "EmotionRecognizer(detector='centerface').predict(str(ASSETS / 'sample.jpg'))\n"
        "app(['predict'], standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert '"label": "happy"' in result.stdout


def test_config_and_keywords_make_the_same_recognizer(astronaut_bgr: np.ndarray) -> None:
    config = RecognizerConfig(model="ferplus", margin=0.1, detect_every=3)
    a, b = EmotionRecognizer(config), EmotionRecognizer(model="ferplus", margin=0.1, detect_every=3)
    assert a.config == b.config == config and a.stream().detect_every == 3
    assert a.predict(astronaut_bgr) == b.predict(astronaut_bgr)
    assert EmotionRecognizer(config, margin=0.0).config.margin == 0.0 and config.margin == 0.1  # the config is not changed
    with pytest.raises(TypeError):
        EmotionRecognizer(colour="red")


def test_recognize_source_images_one_by_one(recognizer: EmotionRecognizer, astronaut_bgr: np.ndarray, tmp_path: Path) -> None:
    """Images are recognised each on its own (no track ids); an unreadable one comes through with its error."""
    cv2.imwrite(str(tmp_path / "a.png"), astronaut_bgr)
    cv2.imwrite(str(tmp_path / "b.png"), np.full((240, 320, 3), 90, np.uint8))
    (tmp_path / "c.png").write_bytes(b"broken")
    results = list(recognize_source(Images([tmp_path]), recognizer))
    assert [Path(frame.origin).name for frame, _ in results] == ["a.png", "b.png", "c.png"]
    (a, faces_a), (_, faces_b), (c, faces_c) = results
    assert faces_a == recognizer.predict(astronaut_bgr) and faces_a[0].track_id is None
    assert faces_b == faces_c == [] and c.image is None and "not a readable image" in c.error


def test_recognize_source_follows_faces_through_a_video(recognizer: EmotionRecognizer, fer_npz: Path, tmp_path: Path) -> None:
    """The shared talking-face video: one face in every frame, one track, searched every 10th frame."""
    source = cv2.VideoCapture(str(fer_npz.parent / "face_talking_854x480.mp4"))
    out = cv2.VideoWriter(str(tmp_path / "talk.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (854, 480))
    for _ in range(25):
        out.write(source.read()[1])
    out.release()
    stream = EmotionRecognizer(detect_size=320).stream()
    results = list(recognize_source(Video(tmp_path / "talk.mp4"), stream))
    assert [frame.index for frame, _ in results] == list(range(25))
    assert all(len(faces) == 1 and faces[0].track_id == 1 for _, faces in results)
    assert stream.frames == 25 and stream.seconds["detect"] > 0 and stream.seconds["follow"] > 0
    first, faces = results[0]
    (alone,) = EmotionRecognizer(detect_size=320).predict(first.image)  # frame 0 is searched: the same box as a still
    assert faces[0].box == alone.box


def test_predict_holds_the_lock(recognizer: EmotionRecognizer, astronaut_bgr: np.ndarray) -> None:
    """One recognizer serves several threads (the server's): predict waits for whoever holds the lock."""
    done = []
    with recognizer.lock:
        worker = threading.Thread(target=lambda: done.append(recognizer.predict(astronaut_bgr)))
        worker.start()
        worker.join(0.5)
        assert worker.is_alive() and not done
    worker.join(30)
    assert len(done) == 1 and done[0][0].label == "happy"
