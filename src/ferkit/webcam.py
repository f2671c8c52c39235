"""The real-time window: camera frames in, boxes, labels, confidence and FPS out.

Keys: Q or ESC quit, S screenshot (timestamped PNG, path printed), A all-emotion bars on/off,
SPACE pause/resume. Frames are read in their own thread and only the newest is kept, so
capture never waits for inference and the picture never lags behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .annotate import draw, draw_fps
from .recognize import DETECT_EVERY, EmotionRecognizer
from .video import VideoError, open_video


class FrameGrabber:
    """Read frames in a background thread, keeping only the newest. A video file stands in for a
    camera at its own frame rate (so tests can use one); a camera is read as fast as it delivers."""

    def __init__(self, source: int | str, loop: bool = False) -> None:
        self.cap = open_video(source)
        self.loop = loop
        self.is_file = not isinstance(source, int)
        self.interval = 1.0 / (self.cap.get(cv2.CAP_PROP_FPS) or 30.0) if self.is_file else 0.0
        self.frame: np.ndarray | None = None
        self.count = 0
        self.ended = False  # the camera disconnected, or the file ran out
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        next_time = time.perf_counter()
        while not self.stopping.is_set():
            ok, frame = self.cap.read()
            if not ok and self.loop and self.is_file and self.count:
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = self.cap.read()
            if not ok:
                self.ended = True
                return
            with self.lock:
                self.frame, self.count = frame, self.count + 1
            if self.interval:
                next_time += self.interval
                time.sleep(max(0.0, next_time - time.perf_counter()))

    def latest(self) -> tuple[np.ndarray | None, int]:
        with self.lock:
            return self.frame, self.count

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=2)
        self.cap.release()


def check_display() -> None:
    """Qt aborts the whole process when it finds no display to open a window on, so a child process
    opens one first, and its failure becomes one clear error."""
    probe = subprocess.run([sys.executable, "-c", "import cv2; cv2.namedWindow('ferkit display check'); cv2.destroyAllWindows()"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        where = f"display {display} cannot be reached" if display else "DISPLAY is not set"
        raise VideoError(f"no display for the webcam window ({where}); run it on a desktop, or use `ferkit video` for a file")


def run(
    source: int | str,
    recognizer: EmotionRecognizer,
    shots: Path = Path("screenshots"),
    show_all: bool = False,
    window: str = "ferkit",
    loop: bool = False,
    detect_every: int = DETECT_EVERY,
    log: Callable[[str], None] = print,
) -> int:
    """Run the window until the user quits (0) or the camera is lost (1)."""
    grabber = FrameGrabber(source, loop)
    stream = recognizer.stream(detect_every)
    paused, shown, last_count, fps, t_last = False, None, 0, 0.0, time.perf_counter()
    try:
        check_display()
        cv2.namedWindow(window, cv2.WINDOW_NORMAL)
        log(f"ferkit webcam: {source}. Keys: Q/ESC quit, S screenshot, A all emotions, SPACE pause")
        while True:
            frame, count = grabber.latest()
            if frame is None and grabber.ended:
                raise VideoError(f"{source}: no frame could be read")
            if frame is not None and not paused and count != last_count:
                last_count = count
                faces = stream(frame)
                shown = draw(frame, faces, show_all)
                now = time.perf_counter()
                fps = 0.9 * fps + 0.1 / max(now - t_last, 1e-6) if fps else 1 / max(now - t_last, 1e-6)
                t_last = now
                draw_fps(shown, fps)
            if shown is not None:
                cv2.imshow(window, shown)
            key = cv2.waitKey(1) & 0xFF
            if key in (ord("q"), ord("Q"), 27):
                log("quit")
                return 0
            if key in (ord("s"), ord("S")) and shown is not None:
                shots.mkdir(parents=True, exist_ok=True)
                path = shots / f"ferkit_{datetime.now():%Y%m%d_%H%M%S_%f}.png"
                cv2.imwrite(str(path), shown)
                log(f"screenshot: {path}")
            elif key in (ord("a"), ord("A")):
                show_all = not show_all
                log(f"all emotions: {'on' if show_all else 'off'}")
            elif key == ord(" "):
                paused = not paused
                log("paused" if paused else "resumed")
            if grabber.ended and not paused:
                log(f"{source}: {'end of video' if grabber.is_file else 'camera disconnected'}")
                return 0 if grabber.is_file else 1
            if cv2.getWindowProperty(window, cv2.WND_PROP_VISIBLE) < 1:
                log("window closed")
                return 0
    finally:
        grabber.close()
        cv2.destroyAllWindows()
