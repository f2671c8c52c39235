"""Images to results: `ferkit predict` as a library function. Every face of every image goes to one
results file (JSON lines or CSV), and with `save` an annotated copy of each image is written."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from .annotate import draw
from .errors import ImageError, OptionError
from .progress import Meter
from .recognize import EmotionRecognizer, recognize_source
from .results import ResultWriter, same_file
from .sources import Images


def predict(
    sources: Sequence[str | Path],
    recognizer: EmotionRecognizer,
    out: Path | None = None,
    save: Path | None = None,
    show_all: bool = False,
    progress: bool = False,
    warn: Callable[[str], None] = print,
) -> dict:
    """Recognise every face in images, folders (recursive) and glob patterns; return a summary
    (images, faces, labels, unreadable, seconds, rate in images a second). With `progress`, a bar
    with the rate and the time left is drawn on stderr. Results go to `out` (.jsonl or .csv; JSON lines on stdout
    without it). An unreadable image is told to `warn`, recorded with its error, and skipped."""
    images = Images(sources, warn)
    clash = next((path for path, _ in images.files if out is not None and same_file(out, path)), None)
    if clash is not None:
        raise OptionError(f"{out}: that is the input image {clash}; writing results there would destroy it")
    labels, failed = Counter(), 0
    frames = recognize_source(images, recognizer)
    with ResultWriter(out, recognizer.labels) as writer, Meter("images", len(images), "images", enabled=len(images) > 1 and progress) as meter:
        for frame, faces in meter.track(frames):
            if frame.image is None:
                warn(frame.error)
                writer.write([frame.origin], error=frame.error)
                failed += 1
                continue
            labels.update(f.label for f in faces)
            writer.write([frame.origin], faces)
            if save:
                target = save / frame.name.with_name(frame.name.stem + "_ferkit.jpg")
                target.parent.mkdir(parents=True, exist_ok=True)
                write_image(target, draw(frame.image, faces, show_all))
    return {"images": len(images), "faces": sum(labels.values()), "labels": dict(labels), "unreadable": failed,
            "seconds": meter.seconds, "rate": meter.rate}


def write_image(path: Path, image: np.ndarray) -> None:
    """Write an image encoded as its file's suffix says (.jpg, .png)."""
    ok, data = cv2.imencode(path.suffix, image)
    if not ok:
        raise ImageError(f"{path}: cannot encode the annotated image")
    path.write_bytes(data.tobytes())
