"""The real-time window: camera frames in, boxes, labels, confidence and FPS out.

Keys: Q or ESC quit, S screenshot (timestamped PNG, path printed), A all-emotion bars on/off,
SPACE pause/resume. Frames are read in their own thread and only the newest is kept
(`sources.Camera`), so capture never waits for inference and the picture never lags behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

import cv2

from .annotate import draw, draw_fps
from .errors import VideoError
from .recognize import EmotionRecognizer, recognize_source
from .sources import Camera


def check_display() -> None:
    """Qt aborts the whole process when it finds no display to open a window on, so a child process
    opens one first (under another name), and its failure becomes one clear error."""
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
    log: Callable[[str], None] = print,
) -> int:
    """Run the window until the user quits (0) or the camera is lost (1). The detector searches
    every `recognizer.config.detect_every`th frame."""
    camera = Camera(source, loop)
    frames = recognize_source(camera, recognizer)
    paused, shown, fps, t_last = False, None, 0.0, time.perf_counter()
    try:
        check_display()
        cv2.namedWindow(window, cv2.WINDOW_NORMAL)
        log(f"ferkit webcam: {source}. Keys: Q/ESC quit, S screenshot, A all emotions, SPACE pause")
        while True:
            if not paused:
                result = next(frames, None)
                if result is None:  # the camera is lost, or the file ended
                    if camera.count == 0:
                        raise VideoError(f"{source}: no frame could be read")
                    log(f"{source}: {'end of video' if camera.is_file else 'camera disconnected'}")
                    return 0 if camera.is_file else 1
                frame, faces = result
                if frame.image is not None:  # else nothing new yet: keep showing the last one
                    shown = draw(frame.image, faces, show_all)
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
            if cv2.getWindowProperty(window, cv2.WND_PROP_VISIBLE) < 1:
                log("window closed")
                return 0
    finally:
        camera.close()
        cv2.destroyAllWindows()
