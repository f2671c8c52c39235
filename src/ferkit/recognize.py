"""The recognition pipeline and its one loop: detect faces, crop them, classify them all in one
batch (`EmotionRecognizer`); follow them through video frames (`StreamRecognizer`); and every
frame of a source with its faces (`recognize_source`), which every front end consumes: `predict`,
`video`, `webcam` and the pipeline benchmark only decide what to do with the output."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from .classify import EmotionClassifier, crop_face, upright_face
from .detect import create_detector, to_gray
from .errors import OptionError
from .results import Detection, Face
from .sources import Frame, read_image
from .track import Follower, Tracker

if TYPE_CHECKING:
    from PIL.Image import Image

DETECT_EVERY = 10  # video and camera: a full face search every 10th frame (1/3 s at 30 FPS), faces followed between
STREAM_DETECT_SIZE = 320  # video and camera: faces searched in frames shrunk to 320 px (`ferkit benchmark pipeline`)
# With `views`, each face is classified as its box cropped and grown by 5% per side, each also
# mirrored, and the four answers averaged: a detector's box misses the face's true square by a few
# percent of its side, in place and in size, and one crop's answer moves with that error. Chosen on
# PublicTest scenes: more faces given their label than either half alone, and three sizes gained no
# more than two (`ferkit benchmark detect` shows the default beside --no-views).
VIEW_MARGINS = (0.0, 0.05)


@dataclass
class RecognizerConfig:
    """How faces are found and classified: the one set of options of every recognition verb
    (`predict`, `video`, `webcam`, `serve`), of the library and of `/api/v1/model`. Each field's
    metadata is its command-line help; `detect_size` and `detect_every` are for video and camera frames."""

    model: str | Path | Sequence[str | Path] | None = field(default=None, metadata={"type": Optional[list[Path]], "help": "ONNX model(s), or a shipped one by name: fer2013 (the default) or ferplus; several = averaged ensemble."})
    detector: str = field(default="centerface", metadata={"help": "Face detector: centerface (finds the most faces, with landmarks to align them; asks yunet for a second opinion), yunet or haar."})
    min_face: int | None = field(default=None, metadata={"help": "Smallest face to detect, pixels (default: the detector's own: 24 for centerface and yunet, 40 for haar)."})
    min_score: float | None = field(default=None, metadata={"help": "Lowest detector score to keep (default: the detector's own; centerface keeps 0.4 of it where the landmarks have a face's shape)."})
    margin: float = field(default=0.0, metadata={"help": "Grow each face box by this fraction per side before cropping."})
    align: bool = field(default=True, metadata={"help": "Turn each face upright by its eyes, nose and mouth before cropping its box (detectors that find landmarks: centerface); --no-align crops the box as it is."})
    views: bool = field(default=True, metadata={"help": "Average each face's answer over four crops: its box as it is and grown by 5% per side, each also mirrored; --no-views classifies one crop (faster; its answer moves more with the box's error)."})
    tta: bool = field(default=False, metadata={"help": "Test-time augmentation (mirror and shifted crops of each crop): slower, a little more accurate."})
    detect_size: int | None = field(default=None, metadata={"help": "Search for faces in frames shrunk to at most this many pixels wide or high (speed)."})
    detect_zoom: float = field(default=1.0, metadata={"min": 1.0, "help": "Also search each image enlarged this many times (2: twice as wide) and keep what either search finds: more small and blurry faces, for about 5x the search time."})
    detect_every: int = field(default=DETECT_EVERY, metadata={"min": 1, "help": "Search the whole frame for faces every Nth frame; known faces are followed between (1: search every frame)."})


class EmotionRecognizer:
    """The one pipeline every front end calls: detect faces, crop them, classify all in one batch.

    >>> EmotionRecognizer().predict("photo.jpg")  # -> [Face(box=..., label='happy', confidence=0.93, ...)]

    `EmotionRecognizer(model="ferplus", tta=True)` is short for
    `EmotionRecognizer(RecognizerConfig(model="ferplus", tta=True))`. One recognizer may serve
    several threads: `predict` holds its `lock`, since OpenCV's detectors are not safe to call from
    several threads at once (and ONNX Runtime uses every core for each call anyway).
    """

    def __init__(self, config: RecognizerConfig | None = None, *, threads: int | None = None, **options: Any) -> None:
        self.config = c = replace(config or RecognizerConfig(), **options)
        self.classifier = EmotionClassifier(c.model, threads=threads)
        detector_options = {k: v for k, v in (("min_size", c.min_face), ("min_score", c.min_score), ("max_side", c.detect_size), ("zoom", c.detect_zoom)) if v is not None}
        self.detector = create_detector(c.detector, **detector_options)
        self.lock = threading.RLock()

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classifier.labels

    def predict(self, image: str | Path | np.ndarray | Image, color: str = "bgr") -> list[Face]:
        """Faces in one image (path, array or PIL image; arrays are BGR unless `color="rgb"`)."""
        bgr = read_image(image, color)
        gray = to_gray(bgr)
        with self.lock:
            return self.classify(gray, self.detect(bgr, gray))

    def detect(self, bgr: np.ndarray, gray: np.ndarray) -> list[Detection]:
        """Run the detector on the image form it works on, so the grey one is converted only once."""
        return self.detector(gray if getattr(self.detector, "takes_gray", False) else bgr)  # any callable may detect

    def classify(self, gray: np.ndarray, detections: list[Detection]) -> list[Face]:
        """Crop and classify detected faces, all in one batch."""
        if not detections:
            return []
        margins = [self.config.margin + m for m in VIEW_MARGINS] if self.config.views else [self.config.margin]
        crops = np.stack([self.crop(gray, d, margin) for margin in margins for d in detections])
        if self.config.views:
            crops = np.concatenate([crops, crops[:, :, ::-1]])
        probs = self.classifier.predict_proba(crops, tta=self.config.tta).reshape(-1, len(detections), len(self.labels)).mean(0)
        return [
            Face(d.box, d.score, self.labels[int(p.argmax())], float(p.max()), dict(zip(self.labels, map(float, p))))
            for d, p in zip(detections, probs)
        ]

    def crop(self, gray: np.ndarray, detection: Detection, margin: float | None = None) -> np.ndarray:
        """A detection's 48x48 face: its box grown by `margin` (default: the config's), turned
        upright by its landmarks where it has them (and `align` is on)."""
        margin = self.config.margin if margin is None else margin
        if self.config.align and detection.landmarks:
            return upright_face(gray, detection.box, detection.landmarks, margin)
        return crop_face(gray, detection.box, margin)

    def stream(self, detect_every: int | None = None, smoothing: float = 0.6) -> StreamRecognizer:
        """A recogniser for consecutive video frames: tracking, smoothing, optional sparse detection
        (every `detect_every`th frame; default: the config's)."""
        return StreamRecognizer(self, detect_every or self.config.detect_every, smoothing)


class StreamRecognizer:
    """Frames of one video or camera, in order: faces keep track ids and smoothed probabilities.

    With `detect_every=k` the detector searches every k-th frame; on the frames between, each
    face is followed from its last box by template matching (`track.Follower`), which costs about
    a hundredth of a search. Every frame is still classified. This is what makes the pipeline
    real-time on a small CPU, since detection costs far more than classification.
    """

    def __init__(self, recognizer: EmotionRecognizer, detect_every: int = DETECT_EVERY, smoothing: float = 0.6) -> None:
        if detect_every < 1:
            raise OptionError("detect_every must be 1 or more")
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


def recognize_source(source: Iterable[Frame], recognizer: EmotionRecognizer | StreamRecognizer) -> Iterator[tuple[Frame, list[Face]]]:
    """The recognition loop: each frame of a source (`sources.Images`, `Video`, `Camera`) with the
    faces in it. A video's or camera's frames go through one `StreamRecognizer`, so faces keep
    their track ids and the detector searches only every `detect_every`th frame (pass a stream to
    read its stage timings afterwards); images are recognised each on its own. A frame without an
    image (unreadable, or a camera with nothing new yet) comes through with no faces."""
    if isinstance(recognizer, StreamRecognizer):
        recognize = recognizer
    else:
        recognize = recognizer.stream() if getattr(source, "stream", False) else recognizer.predict
    for frame in source:
        yield frame, ([] if frame.image is None else recognize(frame.image))
