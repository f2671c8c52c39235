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


# Rows of each split in `small_data`: enough for every behaviour the tests check, a sixth of the time.
SMALL_SPLITS = {"Training": 2000, "PublicTest": 600, "PrivateTest": 600}


@pytest.fixture(scope="session")
def small_data(fer_npz: Path, fer: FERData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A slice of FER2013 (rows drawn at random with a fixed seed; see SMALL_SPLITS) as fer2013.npz,
    with the same rows of fer2013new.csv beside it where FER+ is present, for the tests that train,
    export or evaluate throwaway models: the whole splits would add time and check nothing more.
    The shipped models are scored on the whole of PrivateTest (test_evaluate)."""
    import numpy as np

    from ferkit.data import SPLITS

    rng = np.random.default_rng(0)
    rows = np.sort(np.concatenate([rng.choice(np.flatnonzero(fer.usage == SPLITS.index(name)), n, replace=False)
                                   for name, n in SMALL_SPLITS.items()]))
    folder = tmp_path_factory.mktemp("small_data")
    np.savez(folder / "fer2013.npz", pixels=fer.pixels[rows], labels=fer.labels[rows], usage=fer.usage[rows])
    ferplus = fer_npz.parent / "fer2013new.csv"
    if ferplus.is_file():
        lines = ferplus.read_text().splitlines(keepends=True)
        (folder / "fer2013new.csv").write_text(lines[0] + "".join(lines[1 + i] for i in rows))
    return folder / "fer2013.npz"


@pytest.fixture(scope="session")
def small_ferplus(small_data: Path, ferplus_csv: Path) -> Path:
    """FER+ labels of `small_data`'s rows."""
    return small_data.parent / "fer2013new.csv"


def ferkit(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real `ferkit` command line, as a user would."""
    result = subprocess.run([sys.executable, "-m", "ferkit.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)
    if check and result.returncode != 0:
        raise AssertionError(f"ferkit {' '.join(map(str, args))} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def tiny_run(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short real training run (tiny_cnn, 1 epoch, 1,000 images), shared by the tests that need a checkpoint."""
    runs = tmp_path_factory.mktemp("runs")
    ferkit("train", "--data", small_data, "--model", "tiny_cnn", "--epochs", "1", "--subset", "1000", "--runs-dir", runs, "--name", "tiny")
    return runs / "tiny"


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run: Path, small_data: Path) -> Path:
    out = tiny_run / "tiny.onnx"
    ferkit("export", tiny_run / "best.pt", "--out", out, "--data", small_data)
    return out


def write_clip(source: Path, out: Path, frames: int = 45, audio: str = "aac") -> None:
    """The first `frames` frames of `source` as MPEG-4 Part 2 video with a 440 Hz tone as sound:
    AAC in an MP4, or `audio="pcm_s16le"` in an AVI (as some cameras record), made here with PyAV
    so that no video file is committed."""
    import av
    import cv2
    import numpy as np

    cap = cv2.VideoCapture(str(source))
    with av.open(str(out), "w", format="avi" if audio == "pcm_s16le" else "mp4") as container:
        video = container.add_stream("mpeg4", rate=30)
        video.width, video.height, video.pix_fmt = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), "yuv420p"
        sound = container.add_stream(audio, rate=48000)
        sound.layout = "mono"
        for i in range(frames):
            ok, frame = cap.read()
            assert ok
            picture = av.VideoFrame.from_ndarray(frame, format="bgr24")
            picture.pts = i
            container.mux(video.encode(picture))
        tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(48000 * frames // 30) / 48000)
        samples = (tone * 32767).astype(np.int16) if audio == "pcm_s16le" else tone.astype(np.float32)
        wave = av.AudioFrame.from_ndarray(samples[None], format=sound.codec_context.format.name, layout="mono")
        wave.sample_rate, wave.pts = 48000, 0
        container.mux(sound.encode(wave))
        container.mux(sound.encode(None))
        container.mux(video.encode(None))


@pytest.fixture(scope="session")
def clip_with_sound(fer_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """45 frames (1.5 s) of the shared talking-face video with an AAC sound track."""
    path = tmp_path_factory.mktemp("clip") / "talk.mp4"
    write_clip(fer_npz.parent / "face_talking_854x480.mp4", path)
    return path


@pytest.fixture(scope="session")
def annotated_clip(clip_with_sound: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """`ferkit video` run once on the clip with sound (to an annotated video and per-frame CSV), shared
    by the tests that probe the result and the one that plays it in Chromium."""
    out = tmp_path_factory.mktemp("annotated") / "talk_ferkit.mp4"
    return out, ferkit("video", clip_with_sound, "--out", out, "--csv", out.with_name("frames.csv"))


@pytest.fixture(scope="session")
def astronaut_bgr():
    """A real photo with one smiling face (scikit-image's astronaut, Eileen Collins, NASA)."""
    import cv2
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
