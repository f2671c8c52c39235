"""Video files: every frame through the pipeline, with tracking, to an annotated H.264 mp4 (with the
source's sound, see encode.py) and per-frame results."""

from __future__ import annotations

from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import cv2

from .annotate import draw
from .encode import VideoEncoder
from .progress import Meter
from .recognize import DETECT_EVERY, EmotionRecognizer
from .report import ResultWriter


class VideoError(ValueError):
    """A video that cannot be opened or written; the CLI prints it as one line and exits with code 2."""


def open_video(source: str | int) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        what = f"camera {source}" if isinstance(source, int) else f"{source}"
        raise VideoError(f"{what}: cannot be opened as a video")
    return cap


def process_video(
    source: str | Path,
    recognizer: EmotionRecognizer,
    out: Path | None = None,
    results: Path | None = None,
    show_all: bool = False,
    progress: bool = True,
    detect_every: int = DETECT_EVERY,
) -> dict:
    """Recognise emotions in every frame; return a summary (frames, faces, tracks, labels, FPS).

    A video that breaks part-way stops there: what was read is written out and the summary says so.
    """
    path = Path(source)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    cap = open_video(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    ok, frame = cap.read()
    if not ok:
        cap.release()
        raise VideoError(f"{path}: no frame could be decoded")
    stream, labels, n, faces_seen = recognizer.stream(detect_every), Counter(), 0, 0
    size = frame.shape[1], frame.shape[0]
    try:
        with (
            ResultWriter(results, recognizer.labels, keys=("frame", "time")) as rows,
            Meter(path.name, total, "frames", enabled=progress) as meter,
            VideoEncoder(out, fps, size, audio_from=path) if out is not None else nullcontext() as writer,
        ):
            while ok:
                faces = stream(frame)
                rows.write([n, round(n / fps, 3)], faces)
                faces_seen += len(faces)
                labels.update(f.label for f in faces)
                n += 1
                if writer is not None:
                    writer.write(draw(frame, faces, show_all))  # no FPS counter: that is for live views
                meter.advance()
                ok, frame = cap.read()
    finally:
        cap.release()
    seconds = meter.seconds
    complete = total is None or n >= total
    return {"frames": n, "expected_frames": total, "complete": complete, "faces": faces_seen,
            "tracks": stream.tracker.next_id - 1, "labels": dict(labels), "seconds": seconds, "fps": n / seconds,
            "audio": writer.audio if writer is not None else None}
