"""Face detection behind one interface: `detector(gray_or_bgr_image) -> list[Detection]`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class Detection:
    box: tuple[int, int, int, int]  # x, y, width, height in image pixels
    score: float


class HaarDetector:
    """OpenCV's frontal-face Haar cascade: ships inside opencv, fast, and the detector FER2013's
    own crops were made with, so its boxes frame faces the way the model saw them in training."""

    name = "haar"

    def __init__(
        self, min_size: int = 40, min_score: float = 0.0, scale_factor: float = 1.1, min_neighbors: int = 5, max_side: int = 640
    ) -> None:
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise RuntimeError(f"cannot load the Haar cascade at {path}")
        self.min_size, self.min_score = min_size, min_score
        self.scale_factor, self.min_neighbors, self.max_side = scale_factor, min_neighbors, max_side

    def __call__(self, image: np.ndarray) -> list[Detection]:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        # Large images are searched at most `max_side` pixels wide: time grows with the area, faces are rarely lost.
        s = min(1.0, self.max_side / max(gray.shape))
        if s < 1:
            gray = cv2.resize(gray, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)
        side = max(1, int(round(self.min_size * s)))
        boxes, _, weights = self.cascade.detectMultiScale3(
            gray, self.scale_factor, self.min_neighbors, minSize=(side, side), outputRejectLevels=True
        )
        found = [
            Detection(tuple(int(round(v / s)) for v in box), float(w))
            for box, w in zip(boxes, np.ravel(weights))
            if float(w) >= self.min_score
        ]
        return sorted(found, key=lambda d: (d.box[0], d.box[1]))


DETECTORS = {"haar": HaarDetector}


def create_detector(name: str = "haar", **options: float) -> HaarDetector:
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}")
    return DETECTORS[name](**options)
