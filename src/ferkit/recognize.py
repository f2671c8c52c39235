"""Recognition: face crops classified through ONNX Runtime (no torch), and the detect-crop-classify
pipeline that every front end (CLI, video, webcam, server) calls."""

from __future__ import annotations

import io
import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import PIL.Image

from .data import EMOTIONS, IMAGE_SIZE, normalize
from .detect import Detection, to_gray

if TYPE_CHECKING:
    from PIL.Image import Image

ASSETS = Path(__file__).parent / "assets"
DEFAULT_MODEL = ASSETS / "ferkit.onnx"
# Models that ship in the package, by the names `--model` takes: the default (FER2013 labels) and
# the variant trained on FER+'s ten-annotator labels.
SHIPPED_MODELS = {"fer2013": DEFAULT_MODEL, "ferplus": ASSETS / "ferkit-ferplus.onnx"}
DETECT_EVERY = 10  # video and camera: a full face search every 10th frame (1/3 s at 30 FPS), faces followed between


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


def model_path(model: str | Path | None) -> Path:
    """A model file, or the file of a shipped model named by `SHIPPED_MODELS` (None: the default)."""
    if model is None:
        return DEFAULT_MODEL
    path = Path(model)
    return SHIPPED_MODELS[str(model)] if not path.exists() and str(model) in SHIPPED_MODELS else path


class EmotionClassifier:
    """Classify 48x48 grayscale faces with one or more ONNX models (several = an averaged ensemble)."""

    def __init__(self, model: str | Path | list[str | Path] | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        paths = [model_path(p) for p in (model if isinstance(model, list) else [model])]
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
            logits = session.run(None, {session.get_inputs()[0].name: x})[0]
            probs += softmax(logits.astype(np.float64)).reshape(len(views), len(faces), -1).sum(0)
        return (probs / (len(views) * len(self.sessions))).astype(np.float32)


class ImageError(ValueError):
    """An image that cannot be used (unreadable, empty, too large); front ends report it and go on."""


class ImageTooLarge(ImageError):
    """An image over the pixel limit (the server answers 413)."""


class ImageTooSmall(ImageError):
    """An image too small to hold a face (the server answers 422)."""


MAX_PIXELS = 60_000_000  # larger images are refused rather than exhausting memory
MIN_SIDE = 8  # pixels; smaller images cannot hold a face
# The encoded formats read: Pillow reads their headers (sizes, before any decoding), OpenCV decodes them.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF")
# ferkit checks every image's size against its own limit before decoding; Pillow's warning would only add noise.
warnings.filterwarnings("ignore", category=PIL.Image.DecompressionBombWarning)


@dataclass
class Face:
    """One recognised face: where it is, how sure the detector was, and the emotion with all 7 probabilities."""

    box: tuple[int, int, int, int]
    score: float
    label: str
    confidence: float
    probabilities: dict[str, float]
    track_id: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def read_image(source: str | Path | np.ndarray | Image, color: str = "bgr") -> np.ndarray:
    """Any image a user may hand over (path, BGR/RGB/gray array, PIL image) -> a BGR or gray uint8 array."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.exists() and not path.is_file():  # a FIFO or device would block or never end
            raise ImageError(f"{path}: not a regular file")
        try:
            raw = np.fromfile(path, dtype=np.uint8)
        except OSError as e:
            raise ImageError(f"{path}: cannot read ({e.strerror or e})") from None
        return decode_image(raw, str(path))
    if not isinstance(source, np.ndarray):  # a PIL image
        try:
            source, color = np.asarray(source.convert("RGB")), "rgb"
        except AttributeError:
            raise ImageError(f"cannot read an image from a {type(source).__name__}") from None
    image = source
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise ImageError(f"image arrays must be uint8 or float in 0..1, got {image.dtype}")
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGR if color == "rgb" else cv2.COLOR_BGRA2BGR)
    elif image.ndim == 3 and image.shape[2] == 3 and color == "rgb":
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim != 2 and not (image.ndim == 3 and image.shape[2] == 3):
        raise ImageError(f"image arrays must be H x W or H x W x 3/4, got shape {image.shape}")
    return _checked_size(np.ascontiguousarray(image), "image")


def decode_image(data: bytes | np.ndarray, what: str = "image", max_pixels: int | None = None) -> np.ndarray:
    """Encoded image bytes -> BGR array. The size the header declares is checked first, so a small
    file that would decode to gigabytes (a decompression bomb) is refused before any decoding."""
    limit = max_pixels or MAX_PIXELS
    raw = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray)) else data
    if raw.size == 0:
        raise ImageError(f"{what}: empty file")
    _check_size(*declared_size(raw, what), what, limit)
    image = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"{what}: not a readable image")
    return _checked_size(image, what, limit)


def declared_size(raw: np.ndarray, what: str = "image") -> tuple[int, int]:
    """Width and height from an encoded image's header alone: Pillow's `open` is lazy and decodes nothing."""
    try:
        with PIL.Image.open(io.BytesIO(raw.tobytes()), formats=IMAGE_FORMATS) as image:
            return image.size
    except PIL.Image.DecompressionBombError:
        raise ImageTooLarge(f"{what}: over {2 * PIL.Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels") from None
    except Exception:  # a parser of untrusted bytes: any failure means the file is not an image we read
        raise ImageError(f"{what}: not a readable image ({', '.join(IMAGE_FORMATS)})") from None


def _checked_size(image: np.ndarray, what: str, limit: int | None = None) -> np.ndarray:
    _check_size(image.shape[1], image.shape[0], what, limit or MAX_PIXELS)
    return image


def _check_size(w: int, h: int, what: str, limit: int) -> None:
    if h == 0 or w == 0:
        raise ImageError(f"{what}: empty image")
    if h * w > limit:
        raise ImageTooLarge(f"{what}: {w}x{h} is over the limit of {limit / 1e6:g} megapixels")
    if min(h, w) < MIN_SIDE:
        raise ImageTooSmall(f"{what}: {w}x{h} pixels is too small to hold a face (at least {MIN_SIDE}x{MIN_SIDE})")


def crop_face(gray: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.0) -> np.ndarray:
    """A detected box (grown by `margin` of its size per side) -> the 48x48 face the model expects;
    parts outside the image are filled by repeating its edge."""
    x, y, w, h = box
    dx, dy = int(round(w * margin)), int(round(h * margin))
    x0, y0, x1, y1 = x - dx, y - dy, x + w + dx, y + h + dy
    H, W = gray.shape
    pad = max(0, -x0, -y0, x1 - W, y1 - H)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    face = gray[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
    return cv2.resize(face, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)


class EmotionRecognizer:
    """The one pipeline every front end calls: detect faces, crop them, classify all in one batch.

    >>> EmotionRecognizer().predict("photo.jpg")  # -> [Face(box=..., label='happy', confidence=0.93, ...)]
    """

    def __init__(
        self,
        model: str | Path | list[str | Path] | None = None,
        detector: str = "haar",
        min_face: int = 40,
        min_score: float | None = None,
        margin: float = 0.0,
        tta: bool = False,
        threads: int | None = None,
        detect_size: int | None = None,
    ) -> None:
        from .detect import create_detector

        self.classifier = EmotionClassifier(model, threads=threads)
        options = {k: v for k, v in (("min_score", min_score), ("max_side", detect_size)) if v is not None}
        self.detector = create_detector(detector, min_size=min_face, **options)
        self.margin, self.tta = margin, tta

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classifier.labels

    def predict(self, image: str | Path | np.ndarray | Image, color: str = "bgr") -> list[Face]:
        """Faces in one image (path, array or PIL image; arrays are BGR unless `color="rgb"`)."""
        bgr = read_image(image, color)
        gray = to_gray(bgr)
        return self.classify(gray, self.detect(bgr, gray))

    def detect(self, bgr: np.ndarray, gray: np.ndarray) -> list[Detection]:
        """Run the detector on the image form it works on, so the grey one is converted only once."""
        return self.detector(gray if getattr(self.detector, "takes_gray", False) else bgr)  # any callable may detect

    def classify(self, gray: np.ndarray, detections: list[Detection]) -> list[Face]:
        """Crop and classify detected faces, all in one batch."""
        if not detections:
            return []
        crops = np.stack([crop_face(gray, d.box, self.margin) for d in detections])
        probs = self.classifier.predict_proba(crops, tta=self.tta)
        return [
            Face(d.box, d.score, self.labels[int(p.argmax())], float(p.max()), dict(zip(self.labels, map(float, p))))
            for d, p in zip(detections, probs)
        ]

    def stream(self, detect_every: int = DETECT_EVERY, smoothing: float = 0.6) -> StreamRecognizer:
        """A recogniser for consecutive video frames: tracking, smoothing, optional sparse detection."""
        return StreamRecognizer(self, detect_every, smoothing)


class StreamRecognizer:
    """Frames of one video or camera, in order: faces keep track ids and smoothed probabilities.

    With `detect_every=k` the detector searches every k-th frame; on the frames between, each
    face is followed from its last box by template matching (`track.Follower`), which costs about
    a hundredth of a search. Every frame is still classified. This is what makes the pipeline
    real-time on a small CPU, since detection costs far more than classification.
    """

    def __init__(self, recognizer: EmotionRecognizer, detect_every: int = DETECT_EVERY, smoothing: float = 0.6) -> None:
        from .track import Follower, Tracker

        if detect_every < 1:
            raise ValueError("detect_every must be 1 or more")
        self.recognizer, self.detect_every = recognizer, detect_every
        self.tracker, self.follower = Tracker(smoothing=smoothing), Follower()
        self.frames = 0
        self.seconds = {"detect": 0.0, "follow": 0.0, "classify": 0.0, "track": 0.0}  # per stage, summed over frames

    def __call__(self, frame: np.ndarray) -> list[Face]:
        t0 = time.perf_counter()
        gray = to_gray(frame)
        t1 = time.perf_counter()
        if self.frames % self.detect_every == 0:
            detections = self.recognizer.detect(frame, gray)
            if self.detect_every > 1:
                self.follower.reset(gray, detections)
            stage = "detect"
        else:
            detections = self.follower(gray)
            stage = "follow"
        t2 = time.perf_counter()
        faces = self.recognizer.classify(gray, detections)
        t3 = time.perf_counter()
        faces = self.tracker.update(faces)
        self.seconds[stage] += t2 - t1
        self.seconds["classify"] += t1 - t0 + t3 - t2  # the grey conversion (for the crops, and Haar detection)
        self.seconds["track"] += time.perf_counter() - t3
        self.frames += 1
        return faces
