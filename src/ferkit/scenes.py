"""Composed scenes: FER2013's 48x48 faces drawn at known places into larger images, so detection
and framing can be measured against boxes we know (`ferkit benchmark detect`, and the tests)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x, y, width, height
FACE_SIZES = (30, 300)  # composed faces' sides, pixels: drawn log-uniformly between the two


@dataclass
class Scene:
    """A BGR image with faces at known places: `boxes[i]` is the square that face `faces[i]` (an
    index into the faces the scene was made from) fills before it is turned; it may reach past the
    image's edge."""

    image: np.ndarray
    boxes: list[Box]
    faces: list[int]


def paste_face(canvas: np.ndarray, face: np.ndarray, box: Box, angle: float = 0.0) -> None:
    """Draw a grey face into a grey or BGR canvas, enlarged to fill the square `box` and turned by
    `angle` degrees (counter-clockwise) about its centre; what falls outside the canvas is cut off."""
    x, y, side, _ = box
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    m = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
    m[:, 2] += (x, y)
    h, w = canvas.shape[:2]
    warped = cv2.warpAffine(big, m, (w, h), flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.full_like(big, 255), m, (w, h), flags=cv2.INTER_NEAREST) > 0
    canvas[inside] = warped[inside, None] if canvas.ndim == 3 else warped[inside]


def compose_scene(faces: np.ndarray, size: int = 144, gap: int = 80) -> tuple[np.ndarray, list[Box]]:
    """Faces, enlarged to `size`, side by side on a grey canvas; returns the BGR image and their boxes."""
    canvas = np.full((size + 2 * gap, len(faces) * (size + gap) + gap), 128, np.uint8)
    boxes = [(gap + i * (size + gap), gap, size, size) for i in range(len(faces))]
    for face, box in zip(faces, boxes):
        paste_face(canvas, face, box)
    return cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR), boxes


def background(rng: np.random.Generator, shape: tuple[int, int], photos: Sequence[np.ndarray] = ()) -> np.ndarray:
    """A BGR background: a flat colour, blurred noise, a linear gradient, or a random part of one of
    `photos` (BGR, each at least a quarter of `shape`), each as likely."""
    h, w = shape
    kind = rng.integers(4 if photos else 3)
    if kind == 0:
        return np.full((h, w, 3), rng.integers(20, 236, 3), np.uint8)
    if kind == 1:
        noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w, 3)).astype(np.float32), (0, 0), rng.uniform(0.5, 6))
        return np.clip(noise / noise.std() * rng.uniform(15, 50) + rng.uniform(70, 190), 0, 255).astype(np.uint8)
    if kind == 2:
        t = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[:h, :w]
        ramp = xx * np.cos(t) + yy * np.sin(t)
        ramp = ((ramp - ramp.min()) / np.ptp(ramp))[..., None]
        start, end = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        return (start + ramp * (end - start)).astype(np.uint8)
    photo = photos[rng.integers(len(photos))]
    scale = max(h / photo.shape[0], w / photo.shape[1]) * rng.uniform(1, 1.5)
    big = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    y, x = rng.integers(big.shape[0] - h + 1), rng.integers(big.shape[1] - w + 1)
    return np.ascontiguousarray(big[y : y + h, x : x + w])


def apart(a: Box, b: Box, gap: float = 0.2) -> bool:
    """Whether two squares, each grown by `gap` of its side per side, do not overlap (room for turned corners)."""
    ga, gb = gap * a[2], gap * b[2]
    return (a[0] + a[2] + ga <= b[0] - gb or b[0] + b[2] + gb <= a[0] - ga
            or a[1] + a[3] + ga <= b[1] - gb or b[1] + b[3] + gb <= a[1] - ga)


def random_scene(faces: np.ndarray, rng: np.random.Generator, photos: Sequence[np.ndarray] = (),
                 shape: tuple[int, int] = (480, 640), most: int = 4) -> Scene:
    """One to `most` faces drawn at random from `faces` onto a random `background`: sides drawn
    log-uniformly from FACE_SIZES, turned by up to 15 degrees (normal, sd 6), one in five reaching
    up to 30% past the image's edge; the whole scene then darkened or brightened (gain 0.6-1.3,
    offset -40..40). A face that finds no free place in 20 tries is left out."""
    h, w = shape
    image = background(rng, shape, photos)
    boxes: list[Box] = []
    chosen: list[int] = []
    for _ in range(rng.integers(1, most + 1)):
        side = int(round(np.exp(rng.uniform(*np.log(FACE_SIZES)))))
        out = 0.3 * side if rng.random() < 0.2 else 0.0
        for _ in range(20):
            box = (int(rng.uniform(-out, w - side + out)), int(rng.uniform(-out, h - side + out)), side, side)
            if all(apart(box, b) for b in boxes):
                k = int(rng.integers(len(faces)))
                paste_face(image, faces[k], box, float(np.clip(rng.normal(0, 6), -15, 15)))
                boxes.append(box)
                chosen.append(k)
                break
    image = cv2.convertScaleAbs(image, alpha=rng.uniform(0.6, 1.3), beta=rng.uniform(-40, 40))
    return Scene(image, boxes, chosen)


def random_scenes(faces: np.ndarray, count: int, seed: int = 0, photos: Sequence[np.ndarray] = (),
                  shape: tuple[int, int] = (480, 640)) -> Iterator[Scene]:
    """`count` scenes of `random_scene`, the same ones for the same seed (and faces and photos)."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield random_scene(faces, rng, photos, shape)
