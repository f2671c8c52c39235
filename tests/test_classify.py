from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ferkit.classify import ASSETS, DEFAULT_MODEL, SHIPPED_MODELS, EmotionClassifier, crop_face
from ferkit.data import FERData
from ferkit.errors import ModelError
from ferkit.recognize import EmotionRecognizer


def test_crop_face_pads_outside_the_image() -> None:
    gray = np.arange(100 * 100, dtype=np.uint16).reshape(100, 100).astype(np.uint8)
    assert crop_face(gray, (10, 10, 48, 48)).shape == (48, 48)
    assert np.array_equal(crop_face(gray, (10, 10, 48, 48)), gray[10:58, 10:58])
    edge = crop_face(gray, (-20, 80, 48, 48))  # partly left of and below the image
    assert edge.shape == (48, 48) and np.array_equal(edge[0, :20], np.repeat(gray[80, 0], 20))
    assert np.array_equal(crop_face(gray, (10, 10, 48, 48), shift=0.25), gray[22:70, 10:58])  # moved down by 12 px
    assert np.array_equal(crop_face(gray, (14, 14, 40, 40), margin=0.1, shift=-0.1), gray[6:54, 10:58])  # 4 px each side, then up 4


def test_classifier_tta_and_ensemble(fer: FERData) -> None:
    single = EmotionClassifier()
    faces = fer.split("PublicTest").pixels[:64]
    p = single.predict_proba(faces)
    t = single.predict_proba(faces, tta=True)
    assert p.shape == t.shape == (64, 7) and np.allclose(t.sum(1), 1, atol=1e-4) and not np.allclose(p, t)
    pair = EmotionClassifier([ASSETS / "ferkit.onnx", ASSETS / "ferkit.onnx"])
    assert np.allclose(pair.predict_proba(faces), p, atol=1e-6)
    assert single.predict_proba(faces[:0]).shape == (0, 7)


def test_shipped_models_by_name(astronaut_bgr: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--model ferplus` is the FER+ variant that ships in the package; a file of that name is taken before it."""
    plus = EmotionRecognizer(model="ferplus")
    assert plus.classifier.paths == [SHIPPED_MODELS["ferplus"]] and SHIPPED_MODELS["ferplus"].parent == ASSETS
    assert plus.classifier.card["metrics"]["labels"] == "FER+ majority"
    (face,) = plus.predict(astronaut_bgr)
    assert face.label == "happy"
    assert EmotionClassifier("fer2013").paths == EmotionClassifier().paths == [DEFAULT_MODEL]
    monkeypatch.chdir(tmp_path)
    Path("ferplus").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="ferplus: not a loadable ONNX model"):
        EmotionClassifier("ferplus")


def test_bad_model_file(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"nonsense")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        EmotionClassifier(tmp_path / "m.onnx")
    with pytest.raises(ModelError, match="no such model file"):
        EmotionClassifier(tmp_path / "none.onnx")
