from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ferkit
from ferkit.data import EMOTIONS, FERPLUS_COLUMNS, SPLITS, DataError, FERData, ferplus_faces, load, normalize

# Per class Training / PublicTest / PrivateTest counts from the data's README.
COUNTS = {
    "angry": (3995, 467, 491), "disgust": (436, 56, 55), "fear": (4097, 496, 528), "happy": (7215, 895, 879),
    "sad": (4830, 653, 594), "surprise": (3171, 415, 416), "neutral": (4965, 607, 626),
}


def write_fer_csv(path: Path, data: FERData, rows: np.ndarray) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for i in rows:
            w.writerow([data.labels[i], " ".join(map(str, data.pixels[i].ravel())), SPLITS[data.usage[i]]])


def test_npz_has_official_splits(fer: FERData) -> None:
    assert len(fer) == 35887
    for s, name in enumerate(SPLITS):
        part = fer.split(name)
        counts = np.bincount(part.labels, minlength=7)
        assert counts.tolist() == [COUNTS[e][s] for e in EMOTIONS]
    assert fer.pixels.dtype == np.uint8 and fer.pixels.shape[1:] == (48, 48)


def test_csv_reader_matches_npz(fer: FERData, tmp_path: Path) -> None:
    rows = np.r_[0:40, 28709:28720, 32298:32310]  # rows from all three splits
    write_fer_csv(tmp_path / "fer2013.csv", fer, rows)
    got = load(tmp_path / "fer2013.csv")
    assert np.array_equal(got.pixels, fer.pixels[rows])
    assert np.array_equal(got.labels, fer.labels[rows])
    assert np.array_equal(got.usage, fer.usage[rows])


def test_folder_reader_matches_npz_and_holds_out_val(fer: FERData, tmp_path: Path) -> None:
    rows = np.r_[0:60, 32298:32320]
    for i in rows:
        split = "train" if fer.usage[i] == 0 else "test"
        folder = tmp_path / split / EMOTIONS[fer.labels[i]]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:05d}.png"), fer.pixels[i])
    got = load(tmp_path)
    assert len(got) == len(rows)
    # No val folder: 10% of train stands in for PublicTest; test is PrivateTest.
    assert (got.usage == 1).sum() == 6 and (got.usage == 2).sum() == 22
    want = {fer.pixels[i].tobytes(): fer.labels[i] for i in rows}
    assert all(want[p.tobytes()] == label for p, label in zip(got.pixels, got.labels))


def test_ferplus_majority_and_soft_labels(fer_npz: Path, ferplus_csv: Path) -> None:
    plain = load(fer_npz)
    plus = load(fer_npz, ferplus=ferplus_csv)
    with open(ferplus_csv, newline="") as f:
        raw = list(csv.DictReader(f))
    non_faces = sum(1 for r in raw if not r["Image name"].strip())
    assert non_faces > 0 and len(plus) < len(plain) - non_faces + 1
    assert plus.soft is not None and np.allclose(plus.soft.sum(1), 1, atol=1e-5)
    assert np.array_equal(plus.soft.argmax(1), plus.labels)
    # Row 0 of FER+: neutral 4, sadness 1, anger 3, disgust 2 -> majority neutral.
    votes = {c: float(raw[0][c]) for c in FERPLUS_COLUMNS}
    assert raw[0]["Image name"] and max(votes, key=votes.get) == "neutral"
    assert plus.labels[0] == EMOTIONS.index("neutral")
    assert np.isclose(plus.soft[0][EMOTIONS.index("angry")], votes["anger"] / 10)
    # FER+ keeps the official splits: its PrivateTest rows are FER2013's PrivateTest rows.
    assert 3000 < len(plus.split("PrivateTest")) <= 3589


def test_ferplus_faces_are_the_rows_it_names_and_does_not_vote_no_face(fer: FERData, ferplus_csv: Path, tmp_path: Path) -> None:
    """FER+ leaves FER2013's non-faces unnamed or votes them NF: every all-black image is among them,
    and so is a row named but voted NF, while a few hundred rows at most are."""
    faces = ferplus_faces(ferplus_csv, len(fer))
    black = fer.pixels.reshape(len(fer), -1).max(1) == 0
    assert black.sum() >= 10 and not faces[black].any()
    assert 0 < (~faces).sum() < 300
    header = ["Usage", "Image name", *FERPLUS_COLUMNS]
    rows = [["Training", "fer0.png", 9, *[0] * 8, 1], ["Training", "", 0, *[0] * 8, 10], ["Training", "fer2.png", 2, *[0] * 8, 8]]
    with open(tmp_path / "votes.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    assert ferplus_faces(tmp_path / "votes.csv", 3).tolist() == [True, False, False]
    with pytest.raises(DataError, match="3 rows, but the FER2013 data has 4"):
        ferplus_faces(tmp_path / "votes.csv", 4)


def test_subset_is_stratified(fer: FERData) -> None:
    train = fer.split("Training")
    part = train.subset(2000, seed=1)
    assert len(part) == 2000
    share = np.bincount(part.labels, minlength=7) / 2000
    assert np.allclose(share, np.bincount(train.labels, minlength=7) / len(train), atol=0.01)
    assert np.array_equal(part.pixels, train.subset(2000, seed=1).pixels)


def test_normalize_matches_card_convention(fer: FERData) -> None:
    x = normalize(fer.pixels[:4])
    assert x.shape == (4, 1, 48, 48) and x.dtype == np.float32
    assert np.allclose(x[0, 0], (fer.pixels[0] / 255 - 0.5) / 0.25, atol=1e-6)


@pytest.mark.parametrize(
    "content, message",
    [
        ("emotion,pixels\n0,1 2 3\n", "expected columns emotion,pixels,Usage"),
        ("emotion,pixels,Usage\n0,1 2 3,Training\n", "3 pixels, expected 2304"),
        ("emotion,pixels,Usage\n0," + "x " * 2304 + ",Training\n", "bad emotion or pixel values"),
        ("emotion,pixels,Usage\n0," + "300 " * 2304 + ",Training\n", "must lie in 0..255"),
        ("emotion,pixels,Usage\n9," + "1 " * 2304 + ",Training\n", "labels must lie in 0..6"),
        ("emotion,pixels,Usage\n0," + "1 " * 2304 + ",Holdout\n", "unknown Usage"),
        ("", "expected columns"),
    ],
)
def test_bad_csv_gives_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "fer2013.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load(path)


def test_bad_folder_and_files(tmp_path: Path) -> None:
    (tmp_path / "train" / "happy").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "train" / "happy" / "a.png"), np.zeros((64, 64), np.uint8))
    with pytest.raises(DataError, match="64x64, expected 48x48"):
        load(tmp_path)
    (tmp_path / "train" / "happy" / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="not a readable image"):
        load(tmp_path)
    with pytest.raises(DataError, match="no such file"):
        load(tmp_path / "missing.npz")
    (tmp_path / "broken.npz").write_bytes(b"\x00" * 10)
    with pytest.raises(DataError, match="not a readable .npz"):
        load(tmp_path / "broken.npz")
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(DataError, match="unknown data format"):
        load(tmp_path / "data.txt")


def test_cli_bad_data_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "fer2013.csv"
    bad.write_text("emotion,pixels,Usage\n0,1 2 3,Training\n")
    result = ferkit("evaluate", "--data", bad, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "3 pixels, expected 2304" in result.stderr
    result = ferkit("train", "--data", tmp_path / "nope.npz", "--runs-dir", tmp_path, check=False)
    assert result.returncode == 2 and "no such file" in result.stderr and "Traceback" not in result.stderr
