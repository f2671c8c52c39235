"""Drawing results on images: boxes, labels with confidence, optional bars of all 7 emotions, FPS."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .results import Face

# One BGR colour per emotion, so a label can be read at a glance.
COLORS = {
    "angry": (40, 40, 230),
    "disgust": (40, 140, 60),
    "fear": (160, 60, 160),
    "happy": (40, 200, 250),
    "sad": (200, 120, 40),
    "surprise": (230, 180, 60),
    "neutral": (190, 190, 190),
}
FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw(image: np.ndarray, faces: Sequence[Face], show_all: bool = False) -> np.ndarray:
    """A BGR copy of `image` with each face's box and `label 93%` (and its 7 bars with `show_all`)."""
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    scale = max(0.4, min(canvas.shape[:2]) / 900)
    thick = max(1, int(round(scale * 2)))
    for face in faces:
        x, y, w, h = face.box
        color = COLORS.get(face.label, (0, 255, 0))
        cv2.rectangle(canvas, (x, y), (x + w, y + h), color, thick)
        text = f"{face.label} {face.confidence:.0%}" + (f" #{face.track_id}" if face.track_id is not None else "")
        (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
        top = y - th - base - 4 if y - th - base - 4 >= 0 else y + h
        cv2.rectangle(canvas, (x, top), (x + tw + 4, top + th + base + 4), color, -1)
        cv2.putText(canvas, text, (x + 2, top + th + 2), FONT, scale, (0, 0, 0), thick, cv2.LINE_AA)
        if show_all:
            _bars(canvas, face, x + w + 4, y, scale)
    return canvas


def _bars(canvas: np.ndarray, face: Face, x: int, y: int, scale: float) -> None:
    """Seven horizontal bars, one per emotion, right of the box (left of it near the image edge)."""
    row, width = int(18 * scale * 1.6), int(120 * scale * 1.6)
    if x + width + 70 * scale > canvas.shape[1]:
        x = max(0, face.box[0] - width - int(80 * scale) - 4)
    small = scale * 0.8
    left = x + int(75 * scale * 1.3)
    panel = canvas[max(0, y) : y + 7 * row + 4, max(0, x - 2) : left + width + 2]
    panel[:] = (panel * 0.35).astype(canvas.dtype)  # darken behind the bars so the text reads on any background
    for i, (label, p) in enumerate(face.probabilities.items()):
        top = y + i * row
        cv2.putText(canvas, label[:8], (x, top + row - 4), FONT, small, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.rectangle(canvas, (left, top + 3), (left + width, top + row - 2), (60, 60, 60), -1)
        cv2.rectangle(canvas, (left, top + 3), (left + int(width * p), top + row - 2), COLORS.get(label, (0, 255, 0)), -1)


def draw_fps(canvas: np.ndarray, fps: float) -> None:
    text = f"{fps:.1f} FPS"
    cv2.putText(canvas, text, (10, 28), FONT, 0.8, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(canvas, text, (10, 28), FONT, 0.8, (0, 255, 0), 2, cv2.LINE_AA)
