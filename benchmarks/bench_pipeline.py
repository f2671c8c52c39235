"""Frames per second of the whole pipeline (decode, detect, classify, track, draw) on 640x480 video.

    python benchmarks/bench_pipeline.py [--video face_talking_854x480.mp4] [--frames 300]

Two test videos are made from the shared talking-face video (FERKIT_DATA, default ../shared/data):
one face filling a 640x480 frame, and five copies of it in one 640x480 frame. Every detector runs
on both, detecting on every frame and on every 3rd frame (tracked boxes in between). Stage times
are ms per frame; FPS is frames over the wall time of the whole loop.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from ferkit.annotate import draw, draw_fps
from ferkit.detect import DETECTORS
from ferkit.recognize import EmotionRecognizer


def make_videos(source: Path, folder: Path, frames: int) -> dict[str, Path]:
    """640x480 clips with 1 and 5 faces, `frames` long (the source is looped if shorter)."""
    cap = cv2.VideoCapture(str(source))
    one = cv2.VideoWriter(str(folder / "one.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    five = cv2.VideoWriter(str(folder / "five.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    spots = [(13, 30), (220, 30), (427, 30), (116, 260), (323, 260)]
    for _ in range(frames):
        ok, frame = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = cap.read()
        one.write(cv2.resize(frame[:, 107:747], (640, 480)))  # centre 640x480 of the 854x480 frame
        canvas = np.full((480, 640, 3), 235, np.uint8)
        head = cv2.resize(frame[40:340, 295:595], (200, 200))  # the face and some of its surroundings
        for x, y in spots:
            canvas[y : y + 200, x : x + 200] = head
        five.write(canvas)
    one.release()
    five.release()
    return {"1 face": folder / "one.mp4", "5 faces": folder / "five.mp4"}


def run(video: Path, recognizer: EmotionRecognizer, detect_every: int) -> dict[str, float]:
    cap = cv2.VideoCapture(str(video))
    stream = recognizer.stream(detect_every)
    decode = drawing = 0.0
    faces_seen = n = 0
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        ok, frame = cap.read()
        decode += time.perf_counter() - t
        if not ok:
            break
        faces = stream(frame)
        t = time.perf_counter()
        canvas = draw(frame, faces)
        draw_fps(canvas, 0.0)
        drawing += time.perf_counter() - t
        faces_seen += len(faces)
        n += 1
    wall = time.perf_counter() - start
    ms = {k: v * 1000 / n for k, v in stream.seconds.items()}
    return {"decode": decode * 1000 / n, **ms, "draw": drawing * 1000 / n, "faces": faces_seen / n, "fps": n / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = Path(os.environ.get("FERKIT_DATA", "../shared/data"))
    parser.add_argument("--video", type=Path, default=data / "face_talking_854x480.mp4")
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    table = Table(title=f"ferkit pipeline, 640x480 video, {os.cpu_count()} CPU cores (ms per frame)")
    for column in ("detector", "video", "detect every", "faces/frame", "decode", "detect", "classify", "track", "draw", "FPS"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        videos = make_videos(args.video, Path(tmp), args.frames)
        for name in sorted(DETECTORS):
            recognizer = EmotionRecognizer(detector=name)
            for label, path in videos.items():
                for every in (1, 3):
                    r = run(path, recognizer, every)
                    table.add_row(name, label, str(every), f"{r['faces']:.2f}", *(f"{r[k]:.2f}" for k in ("decode", "detect", "classify", "track", "draw")), f"{r['fps']:.1f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
