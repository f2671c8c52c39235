from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferkit.classify import ASSETS
from ferkit.predict import predict
from ferkit.recognize import EmotionRecognizer


@pytest.fixture(scope="module")
def recognizer() -> EmotionRecognizer:
    return EmotionRecognizer()


def test_predict_writes_results_and_annotated_copies(recognizer: EmotionRecognizer, astronaut_bgr: np.ndarray, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    cv2.imwrite(str(photos / "astronaut.png"), astronaut_bgr)
    cv2.imwrite(str(photos / "sub" / "astronaut.png"), cv2.flip(astronaut_bgr, 1))
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    warned: list[str] = []
    summary = predict([photos, ASSETS / "sample.jpg"], recognizer, tmp_path / "r.jsonl", tmp_path / "saved", warn=warned.append)
    assert summary == {"images": 4, "faces": 3, "labels": {"happy": 3}, "unreadable": 1}
    assert len(warned) == 1 and "broken.jpg: not a readable image" in warned[0]
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [Path(r["path"]).name for r in records] == ["astronaut.png", "broken.jpg", "astronaut.png", "sample.jpg"]
    assert records[1]["faces"] == [] and "error" in records[1]
    assert [f["label"] for r in records for f in r["faces"]] == ["happy"] * 3
    saved = sorted(p.relative_to(tmp_path / "saved").as_posix() for p in (tmp_path / "saved").rglob("*.jpg"))
    assert saved == ["astronaut_ferkit.jpg", "sample_ferkit.jpg", "sub/astronaut_ferkit.jpg"]
    annotated = cv2.imread(str(tmp_path / "saved" / "astronaut_ferkit.jpg"))
    x, y, w, h = records[0]["faces"][0]["box"]
    assert annotated.shape == astronaut_bgr.shape and np.abs(annotated[y : y + h, x].astype(int) - astronaut_bgr[y : y + h, x]).mean() > 20  # the box's edge
