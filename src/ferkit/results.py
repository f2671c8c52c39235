"""Results as plain data: a detected box, a recognised face, and the writers that store them as
JSON lines or CSV, one image or frame at a time (flushed, so a crash loses nothing)."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Sequence


@dataclass(frozen=True)
class Detection:
    """A face a detector found: where, how sure it was and, where the detector gives them, five
    landmarks (x, y in image pixels): the eyes, the nose and the mouth's corners, image-left first,
    by which the crop is turned upright (`classify.upright_face`)."""

    box: tuple[int, int, int, int]  # x, y, width, height in image pixels
    score: float
    landmarks: tuple[tuple[float, float], ...] | None = None


@dataclass
class Face:
    """One recognised face: where it is, how sure the detector was, and the emotion with all 7 probabilities."""

    box: tuple[int, int, int, int]
    score: float
    label: str
    confidence: float
    probabilities: dict[str, float]
    track_id: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def same_file(a: Path, b: Path) -> bool:
    """Whether writing `a` would overwrite `b`: the same path once resolved, or one file under two
    names (a hard link)."""
    return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))


class ResultWriter:
    """JSON lines (one object per image or frame) or CSV (one row per face; a row with empty face
    fields for an image or frame without faces, or one that failed), by the file's suffix; stdout if no file.

    `keys` name what identifies a record: ("path",) for images, ("frame", "time") for video.
    """

    def __init__(self, path: Path | None, labels: Sequence[str], keys: Sequence[str] = ("path",)) -> None:
        self.path, self.labels, self.keys = path, list(labels), list(keys)
        self.file: IO[str] = sys.stdout
        self.rows = None

    def __enter__(self) -> ResultWriter:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "w", newline="")
            if self.path.suffix.lower() == ".csv":
                self.rows = csv.writer(self.file)
                self.rows.writerow([*self.keys, "face", "track_id", "x", "y", "w", "h", "score", "label", "confidence", *self.labels, "error"])
        return self

    def write(self, key: Sequence[str | int | float], faces: Sequence[Face] = (), error: str = "") -> None:
        if self.rows is None:
            record = {**dict(zip(self.keys, key)), "faces": [f.to_dict() for f in faces]}
            if error:
                record["error"] = error
            self.file.write(json.dumps(record) + "\n")
        elif not faces:
            self.rows.writerow([*key, *[""] * (9 + len(self.labels)), error])
        else:
            for i, f in enumerate(faces):
                probs = [f"{f.probabilities[k]:.4f}" for k in self.labels]
                track = "" if f.track_id is None else f.track_id
                self.rows.writerow([*key, i, track, *f.box, f"{f.score:.3f}", f.label, f"{f.confidence:.4f}", *probs, ""])
        self.file.flush()

    def __exit__(self, kind: type | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self.file is not sys.stdout:
            self.file.close()
