"""Classifying faces: 48x48 grey crops to the probabilities of 7 emotions through ONNX Runtime (no
torch), with the shipped models by name, test-time views and ensembles."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from .data import EMOTIONS, IMAGE_SIZE, normalize
from .errors import ModelError

ASSETS = Path(__file__).parent / "assets"
DEFAULT_MODEL = ASSETS / "ferkit.onnx"
# Models that ship in the package, by the names `--model` takes: the default (FER2013 labels) and
# the variant trained on FER+'s ten-annotator labels.
SHIPPED_MODELS = {"fer2013": DEFAULT_MODEL, "ferplus": ASSETS / "ferkit-ferplus.onnx"}
# Faces (or test-time views) per ONNX Runtime run: its memory grows with the batch (1,024 faces x 10
# views in one run took 11 GB), its speed stops growing long before; larger inputs run in slices.
MAX_BATCH = 256
# Where FER2013's faces have their eyes, nose and mouth corners (image-left first), in the pixels of
# the 48x48 crop: CenterFace's landmarks on 2,000 Training faces (enlarged 3x, on a border of their
# mean grey), the median of each, made mirror-symmetric (training flips faces). Reproduce with
# `ferkit benchmark landmarks`. Faces are turned upright onto it (`upright_face`), and the detector's
# unsure faces are judged by their distance from its shape (`detect.shape_error`).
FER_LANDMARKS = np.array([[14.5, 19.2], [32.5, 19.2], [23.5, 28.74], [16.29, 36.07], [30.71, 36.07]])

# Faces smaller than 48 px are enlarged with Lanczos: blocky or blurred enlargements lose the detail
# the model reads. On scenes of PublicTest faces (`ferkit benchmark detect --split PublicTest --seed
# 1`) scene accuracy rose from 72.1% (bilinear, commit d01a4a4) to 74.6%; tests/test_classify.py
# checks it on faces shrunk to 32 px.
ENLARGE = cv2.INTER_LANCZOS4


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def tta_views(pixels: np.ndarray, shift: int = 2) -> list[np.ndarray]:
    """Test-time views of (N, 48, 48) faces: the faces, their mirror images, and both shifted by
    `shift` pixels in four directions (edge-padded crops)."""
    views = []
    for base in (pixels, pixels[:, :, ::-1]):
        views.append(np.ascontiguousarray(base))
        padded = np.pad(base, ((0, 0), (shift, shift), (shift, shift)), mode="edge")
        for dy, dx in ((0, 0), (0, 2 * shift), (2 * shift, 0), (2 * shift, 2 * shift)):
            views.append(np.ascontiguousarray(padded[:, dy : dy + IMAGE_SIZE, dx : dx + IMAGE_SIZE]))
    return views


def model_path(model: str | Path | None) -> Path:
    """A model file, or the file of a shipped model named by `SHIPPED_MODELS` (None: the default)."""
    if model is None:
        return DEFAULT_MODEL
    path = Path(model)
    return SHIPPED_MODELS[str(model)] if not path.exists() and str(model) in SHIPPED_MODELS else path


class EmotionClassifier:
    """Classify 48x48 grayscale faces with one or more ONNX models (several = an averaged ensemble)."""

    def __init__(self, model: str | Path | Sequence[str | Path] | None = None, threads: int | None = None) -> None:
        paths = [model_path(p) for p in (model if isinstance(model, (list, tuple)) else [model])]
        options = ort.SessionOptions()
        # Idle ORT threads spin for a while after each run by default, taking the cores that
        # detection, decoding and drawing need next; in a pipeline that costs more than it saves.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self.sessions = []
        for path in paths:
            if not path.is_file():
                raise ModelError(f"{path}: no such model file")
            try:
                self.sessions.append(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))
            except Exception as e:  # onnxruntime raises its own untyped errors for bad files
                raise ModelError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0]})") from None
        self.paths = paths
        card = paths[0].with_suffix(".json")
        self.card: dict = json.loads(card.read_text()) if card.is_file() else {}
        self.labels: tuple[str, ...] = tuple(self.card.get("labels", EMOTIONS))

    def predict_proba(self, faces: np.ndarray, tta: bool = False) -> np.ndarray:
        """uint8 (N, 48, 48) faces -> (N, 7) probabilities, averaged over models (and views with `tta`)."""
        if faces.ndim != 3 or faces.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"faces must be N x 48 x 48, got {faces.shape}")
        if len(faces) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        views = tta_views(faces) if tta else [faces]
        x = np.concatenate([normalize(v) for v in views])
        probs = np.zeros((len(faces), len(self.labels)), dtype=np.float64)
        for session in self.sessions:
            name = session.get_inputs()[0].name
            logits = np.concatenate([session.run(None, {name: x[i : i + MAX_BATCH]})[0] for i in range(0, len(x), MAX_BATCH)])
            probs += softmax(logits.astype(np.float64)).reshape(len(views), len(faces), -1).sum(0)
        return (probs / (len(views) * len(self.sessions))).astype(np.float32)


def crop_face(gray: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.0, shift: float = 0.0) -> np.ndarray:
    """A detected box (grown by `margin` of its size per side, moved down by `shift` of its height)
    -> the 48x48 face the model expects (shrunk by area averaging, enlarged with ENLARGE); parts
    outside the image are filled by repeating its edge."""
    x, y, w, h = box
    y += int(round(h * shift))
    dx, dy = int(round(w * margin)), int(round(h * margin))
    x0, y0, x1, y1 = x - dx, y - dy, x + w + dx, y + h + dy
    H, W = gray.shape
    pad = max(0, -x0, -y0, x1 - W, y1 - H)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    face = gray[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
    return cv2.resize(face, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA if face.shape[0] >= IMAGE_SIZE else ENLARGE)


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 rotation + uniform scale + translation that maps the points `source` (N x 2) nearest
    to `target` in least squares (Umeyama's closed form, without reflection)."""
    ms, mt = source.mean(0), target.mean(0)
    s, t = source - ms, target - mt
    a = (s * t).sum()  # sum of dot products
    b = (s[:, 0] * t[:, 1] - s[:, 1] * t[:, 0]).sum()  # sum of cross products
    c, d = np.array([a, b]) / (s**2).sum()  # scale * cos, scale * sin
    rotation = np.array([[c, -d], [d, c]])
    return np.hstack([rotation, (mt - rotation @ ms)[:, None]])


def upright_face(gray: np.ndarray, box: tuple[int, int, int, int], landmarks: Sequence[tuple[float, float]],
                 margin: float = 0.0, shift: float = 0.0) -> np.ndarray:
    """The 48x48 face of a detected box turned upright about its centre: by the turn that best
    maps its five landmarks onto FER2013's (`FER_LANDMARKS`); `margin` and `shift` as in
    `crop_face`. A tilted face gets the crop its upright self would, framed by the box as FER2013's
    faces were by their detector's: on PublicTest scenes it agrees with the original faces as often
    as the box alone, and more often than mapping the landmarks onto the template (README, "Alignment")."""
    m = similarity(np.asarray(landmarks, np.float64), FER_LANDMARKS)
    angle = np.degrees(np.arctan2(m[1, 0], m[0, 0]))
    x, y, w, h = box
    centre = (x + (w - 1) / 2, y + (h - 1) / 2 + shift * h)  # in pixel indices, as `crop_face` frames it
    turn = cv2.getRotationMatrix2D(centre, -angle, IMAGE_SIZE / (w * (1 + 2 * margin)))
    turn[:, 2] += (IMAGE_SIZE - 1) / 2 - np.array(centre)
    return warp_face(gray, turn)


def warp_face(gray: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The 48x48 crop the 2x3 map `m` (image pixels -> crop pixels) makes: a face much larger than
    48 px is first shrunk by area averaging, as `crop_face` shrinks it, so the warp does not alias;
    a smaller one is enlarged with Lanczos (ENLARGE); what falls outside repeats the image's edge."""
    scale = float(np.hypot(m[0, 0], m[1, 0]))  # crop pixels per image pixel
    if scale < 0.5:
        corners = cv2.invertAffineTransform(m) @ np.array([[0, 0, 1], [IMAGE_SIZE, 0, 1], [0, IMAGE_SIZE, 1], [IMAGE_SIZE, IMAGE_SIZE, 1]], float).T
        x0, y0 = np.floor(corners.min(1)).astype(int)
        x1, y1 = np.ceil(corners.max(1)).astype(int)
        H, W = gray.shape
        pad = max(0, -x0, -y0, x1 - W, y1 - H)
        if pad:
            gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        region = gray[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
        size = (max(1, round(region.shape[1] * 2 * scale)), max(1, round(region.shape[0] * 2 * scale)))
        gray = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
        fx, fy = size[0] / region.shape[1], size[1] / region.shape[0]
        # a pixel u of the shrunk region is image pixel (u + 0.5) / f - 0.5 + x0
        m = m @ np.array([[1 / fx, 0, x0 + 0.5 / fx - 0.5], [0, 1 / fy, y0 + 0.5 / fy - 0.5], [0, 0, 1]])
    return cv2.warpAffine(gray, m, (IMAGE_SIZE, IMAGE_SIZE), flags=ENLARGE if scale > 1 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
