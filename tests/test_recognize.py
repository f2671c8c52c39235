from __future__ import annotations

import numpy as np
import pytest

from conftest import compose_scene
from ferkit.classify import crop_face
from ferkit.data import FERData
from ferkit.recognize import EmotionRecognizer
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
    gets its box, exactly the classifier's answer on its crop, and mostly the classifier's answer
    on the original 48x48 face (the detector's box is not the original crop: 103 of 118 agree
    with the shipped model, measured).

    FER2013's faces are tight crops, hard for a Haar cascade: we measured it finding 58% of these 200."""
    test = fer.split("PrivateTest")
    probs = recognizer.classifier.predict_proba(test.pixels[:200])
    found = agree = false_alarms = 0
    for k in range(0, 200, 4):
        scene, boxes = compose_scene(test.pixels[k : k + 4])
        faces = recognizer.predict(scene)
        if faces:
            crops = np.stack([crop_face(scene[:, :, 0], face.box) for face in faces])
            assert [f.label for f in faces] == [recognizer.labels[i] for i in recognizer.classifier.predict_proba(crops).argmax(1)]
        for face in faces:
            match = [i for i, box in enumerate(boxes) if iou(face.box, box) > 0.4]
            if not match:
                false_alarms += 1
                continue
            found += 1
            agree += face.label == recognizer.labels[probs[k + match[0]].argmax()]
    assert found >= 0.5 * 200 and false_alarms <= 5
    assert agree >= 0.8 * found


def test_no_face_no_result(recognizer: EmotionRecognizer) -> None:
    assert recognizer.predict(np.full((480, 640, 3), 200, np.uint8)) == []


def test_stream_searches_every_kth_frame_and_follows_between(recognizer: EmotionRecognizer, astronaut_bgr: np.ndarray) -> None:
    frames = [np.ascontiguousarray(astronaut_bgr[0:400, 60 + 6 * i : 460 + 6 * i]) for i in range(10)]  # panning camera
    searches = []
    stream = EmotionRecognizer(detector="haar").stream(detect_every=5)
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
