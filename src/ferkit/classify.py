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
    -> the 48x48 face the model expects; parts outside the image are filled by repeating its edge."""
    x, y, w, h = box
    y += int(round(h * shift))
    dx, dy = int(round(w * margin)), int(round(h * margin))
    x0, y0, x1, y1 = x - dx, y - dy, x + w + dx, y + h + dy
    H, W = gray.shape
    pad = max(0, -x0, -y0, x1 - W, y1 - H)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    face = gray[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
    return cv2.resize(face, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
