"""Video files: every frame through the pipeline, with tracking, to an annotated mp4 and per-frame results."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import cv2
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from .annotate import draw, draw_fps
from .errors import VideoError
from .recognize import EmotionRecognizer, recognize_source
from .results import ResultWriter, same_file
from .sources import Video


def process_video(
    source: str | Path,
    recognizer: EmotionRecognizer,
    out: Path | None = None,
    results: Path | None = None,
    show_all: bool = False,
    progress: bool = True,
) -> dict:
    """Recognise emotions in every frame; return a summary (frames, faces, tracks, labels, FPS).
    The detector searches every `recognizer.config.detect_every`th frame.

    A video that breaks part-way stops there: what was read is written out and the summary says so.
    """
    for target in (out, results):
        if target is not None and same_file(target, Path(source)):
            raise VideoError(f"{target}: that is the input video; writing there would destroy it")
    video = Video(source)
    writer = None
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), video.fps, video.size)
        if not writer.isOpened():
            video.close()
            raise VideoError(f"{out}: cannot write a video there")
    labels, tracks, faces_seen = Counter(), set(), 0
    started = time.perf_counter()
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} frames"),
                   TextColumn("{task.fields[fps]:.1f} FPS"), TimeRemainingColumn(), disable=not progress)
    try:
        with ResultWriter(results, recognizer.labels, keys=("frame", "time")) as rows, bar:
            task = bar.add_task(video.path.name, total=video.total, fps=0.0)
            for frame, faces in recognize_source(video, recognizer):
                rows.write([frame.index, round(frame.time, 3)], faces)
                faces_seen += len(faces)
                labels.update(f.label for f in faces)
                tracks.update(f.track_id for f in faces)
                rate = (frame.index + 1) / (time.perf_counter() - started)
                if writer is not None:
                    canvas = draw(frame.image, faces, show_all)
                    draw_fps(canvas, rate)
                    writer.write(canvas)
                bar.update(task, advance=1, fps=rate)
    finally:
        video.close()
        if writer is not None:
            writer.release()
    seconds, n = time.perf_counter() - started, video.read
    return {"frames": n, "expected_frames": video.total, "complete": video.complete, "faces": faces_seen,
            "tracks": len(tracks), "labels": dict(labels), "seconds": seconds, "fps": n / seconds}
