"""FER2013 as users have it: the original CSV, an image-folder tree, or our npz; plus FER+ labels.

Everything loads into one `FERData` of uint8 48x48 faces, int64 labels and a split code, so
training and evaluation never care which format the data came in. No torch here: inference
code imports the constants below.
"""

from __future__ import annotations

import codecs
import csv
import sys
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import DataError

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
SPLITS = ("Training", "PublicTest", "PrivateTest")
IMAGE_SIZE = 48
# Normalisation shared by training, export and inference: x = (pixel / 255 - MEAN) / STD.
MEAN, STD = 0.5, 0.25

# Folder and FER+ column names for our label ids (the Kaggle image-folder names first).
_ALIASES = {
    "angry": 0, "anger": 0,
    "disgust": 1, "disgusted": 1,
    "fear": 2, "fearful": 2,
    "happy": 3, "happiness": 3,
    "sad": 4, "sadness": 4,
    "surprise": 5, "surprised": 5,
    "neutral": 6,
}
_FOLDER_SPLITS = {
    "train": 0, "training": 0,
    "val": 1, "valid": 1, "validation": 1, "publictest": 1,
    "test": 2, "privatetest": 2,
}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")


@dataclass(frozen=True)
class FERData:
    pixels: np.ndarray  # uint8 (N, 48, 48)
    labels: np.ndarray  # int64 (N,), ids into EMOTIONS
    usage: np.ndarray  # int8 (N,), ids into SPLITS
    soft: np.ndarray | None = None  # float32 (N, 7) FER+ vote distributions, when loaded

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, mask: np.ndarray) -> FERData:
        soft = None if self.soft is None else self.soft[mask]
        return FERData(self.pixels[mask], self.labels[mask], self.usage[mask], soft)

    def split(self, name: str) -> FERData:
        """The rows of one official split: Training, PublicTest or PrivateTest."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        part = self.select(self.usage == SPLITS.index(name))
        if len(part) == 0:
            raise DataError(f"the data has no {name} rows")
        return part

    def subset(self, n: int, seed: int = 0) -> FERData:
        """A class-stratified random subset of n rows, for quick runs."""
        if n >= len(self):
            return self
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(self))
        # Take rows in random order, round-robin over classes, so every class keeps its share.
        ranks = np.empty(len(self), dtype=np.int64)
        for c in np.unique(self.labels):
            rows = order[self.labels[order] == c]
            ranks[rows] = np.arange(len(rows)) * len(self) // len(rows)
        keep = np.sort(np.argsort(ranks, kind="stable")[:n])
        return self.select(keep)


def load(path: str | Path, ferplus: str | Path | None = None) -> FERData:
    """Load FER2013 from a `.npz`, a `fer2013.csv` or an image-folder tree; optionally relabel with FER+."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if not path.is_dir() and not path.is_file():  # a FIFO or device would block or never end
        raise DataError(f"{path}: not a regular file or folder")
    if path.is_dir():
        data = load_folder(path)
    elif path.suffix == ".npz":
        data = load_npz(path)
    elif path.suffix == ".csv":
        data = load_csv(path)
    else:
        raise DataError(f"{path}: unknown data format; expected fer2013.csv, a .npz or an image folder")
    if ferplus is not None:
        data = apply_ferplus(data, ferplus)
    return data


def load_npz(path: Path) -> FERData:
    """Read our npz: uint8 pixels (N, 48, 48), labels and usage ids. Pixels of any other type are
    refused rather than cast: 0..1 floats cast to uint8 become black faces, and the model scores chance."""
    if not zipfile.is_zipfile(path):  # np.load would try the file as a pickle and say so
        raise DataError(f"{path}: not a readable .npz file (not a complete zip archive: truncated, or another format)")
    try:
        with np.load(path) as d:
            missing = {"pixels", "labels", "usage"} - set(d.files)
            if missing:
                raise DataError(f"{path}: missing arrays {', '.join(sorted(missing))}")
            pixels, labels, usage = d["pixels"], d["labels"], d["usage"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    if pixels.ndim != 3 or pixels.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{path}: pixels must be N x 48 x 48, got shape {pixels.shape}")
    if not len(pixels) == len(labels) == len(usage):
        raise DataError(f"{path}: pixels, labels and usage differ in length")
    if pixels.dtype != np.uint8:
        found = f"{pixels.dtype} in {pixels.min():.6g}..{pixels.max():.6g}" if pixels.size else str(pixels.dtype)
        raise DataError(f"{path}: pixels must be uint8 in 0..255, found {found}; convert them first (0..1 floats: times 255, rounded)")
    return _checked(path, pixels, labels, usage)


def load_csv(path: Path) -> FERData:
    """Read the original Kaggle `fer2013.csv`: columns emotion, pixels, Usage."""
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding=text_encoding(path), errors="replace") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        want = ["emotion", "pixels", "Usage"]
        if not set(want) <= set(header):
            raise DataError(f"{path}: expected columns emotion,pixels,Usage; found {','.join(header) or 'nothing'}")
        ie, ip, iu = (header.index(c) for c in want)
        pixels, labels, usage = [], [], []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < len(header):
                raise DataError(f"{path}, line {line}: {len(row)} fields, expected {len(header)} ({','.join(header)})")
            try:
                values = np.array(row[ip].split(), dtype=np.int64)
                label = int(row[ie])
            except (ValueError, IndexError):
                raise DataError(f"{path}, line {line}: bad emotion or pixel values") from None
            if values.size != IMAGE_SIZE * IMAGE_SIZE:
                raise DataError(f"{path}, line {line}: {values.size} pixels, expected {IMAGE_SIZE * IMAGE_SIZE}")
            if values.min() < 0 or values.max() > 255:
                raise DataError(f"{path}, line {line}: pixel values must lie in 0..255")
            if row[iu] not in SPLITS:
                raise DataError(f"{path}, line {line}: unknown Usage {row[iu]!r}")
            pixels.append(values.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE))
            labels.append(label)
            usage.append(SPLITS.index(row[iu]))
    if not pixels:
        raise DataError(f"{path}: no rows")
    return _checked(path, np.stack(pixels), np.array(labels), np.array(usage))


def text_encoding(path: Path) -> str:
    """The encoding a CSV file's byte-order mark gives: spreadsheets save UTF-8 with a mark, or
    UTF-16 as "Unicode text"; without a mark, UTF-8."""
    with open(path, "rb") as f:
        start = f.read(2)
    return "utf-16" if start in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "utf-8-sig"


def load_folder(root: Path) -> FERData:
    """Read `root/<split>/<emotion>/*.png|jpg` (split: train, val or test, as in the Kaggle image layout).

    Without a val folder there is no PublicTest for model selection, so a fixed 10% of the
    training images (seed 0) stands in for it.
    """
    import cv2  # only this reader needs OpenCV

    pixels, labels, usage = [], [], []
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        split = _FOLDER_SPLITS.get(split_dir.name.lower())
        if split is None:
            continue
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            label = _ALIASES.get(class_dir.name.lower())
            if label is None:
                raise DataError(f"{class_dir}: unknown emotion folder; expected one of {', '.join(EMOTIONS)}")
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() not in _IMAGE_SUFFIXES:
                    continue
                if not file.is_file():
                    raise DataError(f"{file}: not a regular file")
                image = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
                if image is None:
                    raise DataError(f"{file}: not a readable image")
                if image.shape != (IMAGE_SIZE, IMAGE_SIZE):
                    raise DataError(f"{file}: image is {image.shape[1]}x{image.shape[0]}, expected 48x48")
                pixels.append(image)
                labels.append(label)
                usage.append(split)
    if not pixels:
        raise DataError(f"{root}: no images found under train/<emotion>/ or test/<emotion>/")
    usage_arr = np.array(usage, dtype=np.int8)
    if not (usage_arr == 1).any():
        train = np.flatnonzero(usage_arr == 0)
        held = np.random.default_rng(0).choice(train, size=len(train) // 10, replace=False)
        usage_arr[held] = 1
    return _checked(root, np.stack(pixels), np.array(labels), usage_arr)


def _checked(path: Path, pixels: np.ndarray, labels: np.ndarray, usage: np.ndarray) -> FERData:
    if len(labels) == 0:
        raise DataError(f"{path}: no rows")
    if not np.issubdtype(labels.dtype, np.integer) or not np.issubdtype(usage.dtype, np.integer):
        raise DataError(f"{path}: labels and usage must be integers, found {labels.dtype} and {usage.dtype}")
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= len(EMOTIONS):
        raise DataError(f"{path}: labels must lie in 0..6")
    if usage.min() < 0 or usage.max() >= len(SPLITS):
        raise DataError(f"{path}: usage must lie in 0..2")
    return FERData(pixels, labels, usage.astype(np.int8))


def read_ferplus(path: str | Path, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Read FER+ votes (`fer2013new.csv`): whether each row has an image name (FER+ names none for
    the images it calls no face) and its vote counts, in FERPLUS_COLUMNS' order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with open(path, newline="", encoding=text_encoding(path), errors="replace") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in ("Image name", *FERPLUS_COLUMNS) if c not in header]
        if missing:
            raise DataError(f"{path}: not a FER+ file, missing columns {', '.join(missing)}")
        name_col = header.index("Image name")
        vote_cols = [header.index(c) for c in FERPLUS_COLUMNS]
        names, votes = [], []
        for line, row in enumerate(reader, start=2):
            try:
                votes.append([float(row[i]) for i in vote_cols])
                names.append(row[name_col].strip())
            except (ValueError, IndexError):
                raise DataError(f"{path}, line {line}: bad vote counts") from None
    if len(votes) != n_rows:
        raise DataError(f"{path}: {len(votes)} rows, but the FER2013 data has {n_rows}; they must align 1:1")
    return np.array([bool(n) for n in names]), np.array(votes, dtype=np.float32)


def load_ferplus(path: str | Path, n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read FER+ votes (`fer2013new.csv`); return majority labels, 7-class vote distributions and a keep mask.

    Following Barsoum et al. 2016 for our 7 classes, a row is dropped when it is not a face, or
    when its most-voted column is contempt, unknown or NF.
    """
    named, votes_arr = read_ferplus(path, n_rows)
    # FER+ column order -> our label ids (contempt, unknown, NF have none).
    ours = [FERPLUS_COLUMNS.index(c) for c in ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")]
    seven = votes_arr[:, ours]
    keep = named & np.isin(votes_arr.argmax(1), ours) & (seven.sum(1) > 0)
    soft = seven / np.maximum(seven.sum(1, keepdims=True), 1)
    return seven.argmax(1).astype(np.int64), soft.astype(np.float32), keep


def ferplus_faces(path: str | Path, n_rows: int) -> np.ndarray:
    """Which rows FER+'s annotators call a face: FER2013 holds black squares, icons and signs among
    its faces, which FER+ leaves unnamed or votes NF (not a face); no detector should find them."""
    named, votes = read_ferplus(path, n_rows)
    return named & (votes.argmax(1) != FERPLUS_COLUMNS.index("NF"))


def with_votes(data: FERData, path: str | Path) -> FERData:
    """Attach FER+ vote distributions to FER2013 data, keeping its labels and rows; rows FER+ cannot
    use (not a face, mostly contempt or unknown) get their FER2013 label as the distribution."""
    _, soft, keep = load_ferplus(path, len(data))
    own = np.eye(len(EMOTIONS), dtype=np.float32)[data.labels]
    return replace(data, soft=np.where(keep[:, None], soft, own))


def apply_ferplus(data: FERData, path: str | Path) -> FERData:
    """Replace FER2013 labels by FER+ majority labels and vote distributions, dropping unusable rows."""
    labels, soft, keep = load_ferplus(path, len(data))
    return replace(data, labels=labels, soft=soft).select(keep)


def normalize(pixels: np.ndarray) -> np.ndarray:
    """uint8 (N, 48, 48) faces -> float32 (N, 1, 48, 48) network input."""
    x = pixels.astype(np.float32)[:, None] / 255.0
    return (x - MEAN) / STD
