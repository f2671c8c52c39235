"""Shared fixtures. Tests that need FER2013 read its folder from FERKIT_DATA (`.ci/run` points it at
../shared/data) and skip, saying so, where it is absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ferkit.data import FERData, load


def data_dir() -> Path | None:
    root = os.environ.get("FERKIT_DATA")
    return Path(root) if root and (Path(root) / "fer2013.npz").is_file() else None


@pytest.fixture(scope="session")
def fer_npz() -> Path:
    root = data_dir()
    if root is None:
        pytest.skip("FER2013 not found: set FERKIT_DATA to the folder holding fer2013.npz (CI uses ../shared/data)")
    return root / "fer2013.npz"


@pytest.fixture(scope="session")
def ferplus_csv(fer_npz: Path) -> Path:
    path = fer_npz.parent / "fer2013new.csv"
    if not path.is_file():
        pytest.skip(f"FER+ labels not found at {path}")
    return path


@pytest.fixture(scope="session")
def fer(fer_npz: Path) -> FERData:
    return load(fer_npz)


def ferkit(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real `ferkit` command line, as a user would."""
    result = subprocess.run([sys.executable, "-m", "ferkit.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)
    if check and result.returncode != 0:
        raise AssertionError(f"ferkit {' '.join(map(str, args))} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def tiny_run(fer_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short real training run (tiny_cnn, 1 epoch, 2,000 images), shared by the tests that need a checkpoint."""
    runs = tmp_path_factory.mktemp("runs")
    ferkit("train", "--data", fer_npz, "--model", "tiny_cnn", "--epochs", "1", "--subset", "2000", "--runs-dir", runs, "--name", "tiny")
    return runs / "tiny"


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run: Path, fer_npz: Path) -> Path:
    out = tiny_run / "tiny.onnx"
    ferkit("export", tiny_run / "best.pt", "--out", out, "--data", fer_npz)
    return out


@pytest.fixture(scope="session")
def astronaut_bgr():
    """A real photo with one smiling face (scikit-image's astronaut, Eileen Collins, NASA)."""
    import cv2
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def compose_scene(faces, size: int = 144, gap: int = 80):
    """FER2013 faces, enlarged, on a grey canvas side by side; returns the image and their boxes."""
    import cv2
    import numpy as np

    canvas = np.full((size + 2 * gap, len(faces) * (size + gap) + gap), 128, np.uint8)
    boxes = []
    for i, face in enumerate(faces):
        x = gap + i * (size + gap)
        canvas[gap : gap + size, x : x + size] = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
        boxes.append((x, gap, size, size))
    return cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR), boxes
