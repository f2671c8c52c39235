from __future__ import annotations

import csv
from pathlib import Path

import cv2
import pytest

from conftest import ferkit


@pytest.fixture(scope="module")
def short_video(fer_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 45 frames of the shared talking-face video."""
    src = cv2.VideoCapture(str(fer_npz.parent / "face_talking_854x480.mp4"))
    path = tmp_path_factory.mktemp("video") / "short.mp4"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (854, 480))
    for _ in range(45):
        ok, frame = src.read()
        assert ok
        out.write(frame)
    out.release()
    return path


def test_video_gives_annotated_mp4_and_per_frame_rows(short_video: Path, tmp_path: Path) -> None:
    result = ferkit("video", short_video, "--out", tmp_path / "out.mp4", "--csv", tmp_path / "frames.csv")
    assert "45 frames, 45 faces in 1 track" in result.stderr
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 45
    ok, frame = cap.read()
    assert ok and frame.shape == (480, 854, 3)
    rows = list(csv.DictReader(open(tmp_path / "frames.csv")))
    assert [int(r["frame"]) for r in rows] == list(range(45))
    assert {r["track_id"] for r in rows} == {"1"}
    assert all(abs(sum(float(r[e]) for e in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")) - 1) < 1e-3 for r in rows)


def test_video_broken_part_way_keeps_what_was_read(short_video: Path, tmp_path: Path) -> None:
    """An AVI cut in half (its frames stay decodable up to the cut): results for those, and a warning."""
    src, avi = cv2.VideoCapture(str(short_video)), tmp_path / "whole.avi"
    out = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 30, (854, 480))
    while (frame := src.read())[0]:
        out.write(frame[1])
    out.release()
    data = avi.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    result = ferkit("video", tmp_path / "cut.avi", "--csv", tmp_path / "cut.csv")
    rows = list(csv.DictReader(open(tmp_path / "cut.csv")))
    assert 10 < len(rows) < 45
    assert f"broke off after {len(rows)} of 45 frames" in result.stderr


def test_bad_video_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "x.mp4").write_bytes(b"\x00" * 1000)
    for path in (tmp_path / "x.mp4", tmp_path / "missing.mp4"):
        result = ferkit("video", path, check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr and path.name in result.stderr
