"""Video files: every frame through the pipeline, with tracking, to an annotated H.264 mp4 (with the
source's sound, see encode.py) and per-frame results."""

from __future__ import annotations

from collections import Counter
from contextlib import nullcontext
from pathlib import Path

from .annotate import draw
from .encode import VideoEncoder
from .errors import VideoError
from .progress import Meter
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
    labels, tracks, faces_seen = Counter(), set(), 0
    try:
        with (
            ResultWriter(results, recognizer.labels, keys=("frame", "time")) as rows,
            Meter(video.path.name, video.total, "frames", enabled=progress) as meter,
            VideoEncoder(out, video.fps, video.size, audio_from=video.path) if out is not None else nullcontext() as writer,
        ):
            for frame, faces in recognize_source(video, recognizer):
                rows.write([frame.index, round(frame.time, 3)], faces)
                faces_seen += len(faces)
                labels.update(f.label for f in faces)
                tracks.update(f.track_id for f in faces)
                if writer is not None:
                    writer.write(draw(frame.image, faces, show_all))  # no FPS counter: that is for live views
                meter.advance()
    finally:
        video.close()
    seconds, n = meter.seconds, video.read
    return {"frames": n, "expected_frames": video.total, "complete": video.complete, "faces": faces_seen,
            "tracks": len(tracks), "labels": dict(labels), "seconds": seconds, "fps": n / seconds,
            "audio": writer.audio if writer is not None else None}
