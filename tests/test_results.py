from __future__ import annotations

import csv
import json
from pathlib import Path

from ferkit.data import EMOTIONS
from ferkit.results import Face, ResultWriter

PROBS = {e: (0.94 if e == "happy" else 0.01) for e in EMOTIONS}
FACE = Face((10, 20, 30, 40), 0.9, "happy", 0.94, PROBS, track_id=2)


def test_jsonl_has_one_record_per_image_with_every_face(tmp_path: Path) -> None:
    with ResultWriter(tmp_path / "sub" / "r.jsonl", EMOTIONS) as writer:
        writer.write(["a.jpg"], [FACE, FACE])
        writer.write(["b.jpg"], error="b.jpg: not a readable image")
    a, b = (json.loads(line) for line in (tmp_path / "sub" / "r.jsonl").read_text().splitlines())
    assert a == {"path": "a.jpg", "faces": [json.loads(json.dumps(FACE.to_dict()))] * 2}
    assert b == {"path": "b.jpg", "faces": [], "error": "b.jpg: not a readable image"}


def test_csv_has_one_row_per_face_and_one_for_an_image_without(tmp_path: Path) -> None:
    with ResultWriter(tmp_path / "r.csv", EMOTIONS, keys=("frame", "time")) as writer:
        writer.write([0, 0.0], [FACE])
        writer.write([1, 0.033])
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert [r["frame"] for r in rows] == ["0", "1"]
    assert (rows[0]["track_id"], rows[0]["x"], rows[0]["h"], rows[0]["label"], rows[0]["happy"]) == ("2", "10", "40", "happy", "0.9400")
    assert rows[1]["label"] == rows[1]["error"] == "" and rows[1]["time"] == "0.033"
