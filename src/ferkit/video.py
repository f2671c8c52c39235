"""Video files: every frame through the pipeline, with tracking, to an annotated mp4 and per-frame results."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import cv2

from .annotate import draw, draw_fps
from .recognize import DETECT_EVERY, EmotionRecognizer
from .report import ResultWriter, same_file


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
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    path = Path(source)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    for target in (out, results):
        if target is not None and same_file(target, path):
            raise VideoError(f"{target}: that is the input video; writing there would destroy it")
    cap = open_video(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    ok, frame = cap.read()
    if not ok:
        cap.release()
        raise VideoError(f"{path}: no frame could be decoded")
    writer = None
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        h, w = frame.shape[:2]
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            cap.release()
            raise VideoError(f"{out}: cannot write a video there")
    stream, labels, n, faces_seen = recognizer.stream(detect_every), Counter(), 0, 0
    started = time.perf_counter()
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} frames"),
                   TextColumn("{task.fields[fps]:.1f} FPS"), TimeRemainingColumn(), disable=not progress)
    try:
        with ResultWriter(results, recognizer.labels, keys=("frame", "time")) as rows, bar:
            task = bar.add_task(path.name, total=total, fps=0.0)
            while ok:
                faces = stream(frame)
                rows.write([n, round(n / fps, 3)], faces)
                faces_seen += len(faces)
                labels.update(f.label for f in faces)
                n += 1
                rate = n / (time.perf_counter() - started)
                if writer is not None:
                    canvas = draw(frame, faces, show_all)
                    draw_fps(canvas, rate)
                    writer.write(canvas)
                bar.update(task, advance=1, fps=rate)
                ok, frame = cap.read()
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    seconds = time.perf_counter() - started
    complete = total is None or n >= total
    return {"frames": n, "expected_frames": total, "complete": complete, "faces": faces_seen,
            "tracks": stream.tracker.next_id - 1, "labels": dict(labels), "seconds": seconds, "fps": n / seconds}
