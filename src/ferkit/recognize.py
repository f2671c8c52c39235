"""Emotion classification of face crops through ONNX Runtime: what every front end runs, no torch needed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .data import EMOTIONS, IMAGE_SIZE, normalize

ASSETS = Path(__file__).parent / "assets"
DEFAULT_MODEL = ASSETS / "ferkit.onnx"


class ModelError(ValueError):
    """A model file that cannot be loaded; the CLI prints it as one line and exits with code 2."""


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


class EmotionClassifier:
    """Classify 48x48 grayscale faces with one or more ONNX models (several = an averaged ensemble)."""

    def __init__(self, model: str | Path | list[str | Path] | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        paths = [Path(p) for p in (model if isinstance(model, list) else [model or DEFAULT_MODEL])]
        options = ort.SessionOptions()
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
            logits = session.run(None, {session.get_inputs()[0].name: x})[0]
            probs += softmax(logits.astype(np.float64)).reshape(len(views), len(faces), -1).sum(0)
        return (probs / (len(views) * len(self.sessions))).astype(np.float32)
