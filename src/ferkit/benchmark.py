"""Benchmarks that print tables: model speed (training and inference), the whole pipeline's frame
rate on 640x480 video, detection and framing on faces at known places, where FER2013's faces have
their landmarks, the REST API under concurrent load and in a soak beside slow and malicious
clients, int8 copies of a model, the peak memory of each verb, and `ferkit batch` on Ray against
one process. Run them with `ferkit benchmark models|pipeline|detect|landmarks|quantize|server|soak|memory|batch`
or the scripts in benchmarks/; every speed, memory, detection and batch figure in the README, and
the landmark template, come from here.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from rich.console import Group
from rich.table import Table

from .annotate import draw, draw_fps
from .classify import ASSETS, FER_LANDMARKS, EmotionClassifier, crop_face, model_path, upright_face
from .cluster import free_ports, local_cluster
from .data import IMAGE_SIZE, SPLITS, ferplus_faces, load, normalize
from .detect import DETECTORS, CenterFaceDetector, to_gray
from .errors import FerkitError
from .predict import predict
from .recognize import STREAM_DETECT_SIZE, EmotionRecognizer, RecognizerConfig, recognize_source
from .results import Detection
from .runs import TrainConfig
from .scenes import Box, Scene, random_scenes
from .sources import Video
from .track import intersection, iou
from .video import process_video


# --- models: training img/s (torch) and ONNX Runtime ms per face ---------------------------------


def train_speed(name: str, batch: int = 64, bf16: str = "auto", device: str = "auto", compile: bool = False,
                seconds: float = 2.0) -> float:
    """img/s of full training steps (augmentation, forward, backward, fused SGD, loss and accuracy
    summed on the device) exactly as `ferkit train` runs them, timed over `seconds` after warm-up."""
    import torch  # the training side, here alone: the pipeline and server tables run without torch

    from .checkpoints import pick_device
    from .models import create_model
    from .train import augment, compiled, make_optimizer, train_step, use_bf16

    dev = pick_device(device)
    cfg = TrainConfig(data="", batch_size=batch, compile=compile)
    autocast = use_bf16(bf16, dev)
    torch.backends.cudnn.benchmark = dev.type == "cuda"
    model = create_model(name).to(dev).to(memory_format=torch.channels_last).train()
    opt, forward, g = make_optimizer(model, cfg, dev), compiled(model, cfg), torch.Generator(device=dev).manual_seed(0)
    faces = torch.randint(0, 256, (batch, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).to(dev)
    labels = torch.randint(0, 7, (batch,), device=dev)
    target = torch.nn.functional.one_hot(labels, 7).float()
    total = torch.zeros((), device=dev)

    def run(steps: int) -> None:
        nonlocal total
        for _ in range(steps):
            x = augment(faces, cfg, g).contiguous(memory_format=torch.channels_last)
            loss, logits = train_step(forward, opt, x, target, cfg, autocast)
            total = total + loss + (logits.argmax(1) == labels).sum()
        total.item()  # wait for the device

    run(3)  # warm-up (and compilation)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or steps < 3:
        chunk = 1 if dev.type == "cpu" else 20
        run(chunk)
        steps += chunk
    return steps * batch / (time.perf_counter() - start)


def onnx_latency(model_path: Path, batch: int, threads: int | None, repeats: int = 50) -> float:
    """ms per face through ONNX Runtime, median of repeated runs."""
    classifier = EmotionClassifier(model_path, threads=threads)
    faces = np.random.default_rng(0).integers(0, 256, (batch, 48, 48), dtype=np.uint8)
    for _ in range(5):
        classifier.predict_proba(faces)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        classifier.predict_proba(faces)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000 / batch


def models_table(names: list[str] | None = None, threads: int | None = None, bf16: str = "auto", device: str = "auto",
                 batches: Sequence[int] = (64,), compile: bool = False) -> Table:
    """Training img/s at each batch size on `device`, and ONNX Runtime ms per face on this CPU.
    Untrained weights: speed does not depend on them."""
    import torch  # see train_speed

    from .checkpoints import pick_device
    from .models import count_parameters, create_model, list_models

    dev = pick_device(device)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{os.cpu_count()} CPU cores"
    table = Table(title=f"ferkit models on this machine (training on {where}, bf16 {bf16}{', compiled' if compile else ''}; ONNX Runtime on the CPU)")
    for column in ("model", "params (M)", *(f"train img/s b{b}" for b in batches), "ms/face batch 1", "ms/face batch 32"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or list_models():
            path = Path(tmp) / f"{name}.onnx"
            model = create_model(name).eval()
            torch.onnx.export(model, (torch.zeros(1, 1, 48, 48),), str(path), input_names=["faces"],
                              dynamic_axes={"faces": {0: "batch"}}, opset_version=17, dynamo=False)
            speeds = [f"{train_speed(name, b, bf16, device, compile):.0f}" for b in batches]
            table.add_row(name, f"{count_parameters(model) / 1e6:.2f}", *speeds,
                          f"{onnx_latency(path, 1, threads):.2f}", f"{onnx_latency(path, 32, threads):.3f}")
    return table


# --- quantization: int8 copies of a model against the float one ----------------------------------

# (weights, calibration, reduced range): the settings tried. On AVX2 without VNNI, int8 x int8
# products can saturate (ONNX Runtime's docs), which the reduced range or uint8 weights avoid.
QUANTIZATIONS = {
    "s8, min-max": (QuantType.QInt8, CalibrationMethod.MinMax, False),
    "s8, percentile": (QuantType.QInt8, CalibrationMethod.Percentile, False),
    "s8, min-max, 7-bit": (QuantType.QInt8, CalibrationMethod.MinMax, True),
    "s8, percentile, 7-bit": (QuantType.QInt8, CalibrationMethod.Percentile, True),
    "u8, percentile": (QuantType.QUInt8, CalibrationMethod.Percentile, False),
}


class _Faces(CalibrationDataReader):
    def __init__(self, faces: np.ndarray, batch: int = 64) -> None:
        self.batches = iter([{"faces": normalize(faces[i : i + batch])} for i in range(0, len(faces), batch)])

    def get_next(self) -> dict | None:
        return next(self.batches, None)


def quantize_table(model: str | None, data: Path, calibration: int = 1024, threads: int | None = None) -> Table:
    """Static int8 copies of a model (QDQ, per channel, calibrated on `calibration` random training
    faces), each against the float model on all of PublicTest: top-1 agreement (ferkit ships one
    only at >= 99.5%), accuracy, and ms per face."""
    source = model_path(model)
    part = load(data)
    train, public = part.split("Training"), part.split("PublicTest")
    faces = train.pixels[np.random.default_rng(0).permutation(len(train))[:calibration]]
    table = Table(title=f"int8 copies of {source.name} (PublicTest, {len(public)} faces; {calibration} calibration faces)")
    for column in ("model", "top-1 agreement", "accuracy", "MB", "ms/face batch 1", "ms/face batch 32"):
        table.add_column(column, justify="right")
    reference = EmotionClassifier(source).predict_proba(public.pixels).argmax(1)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))
        rows = {"float32": source}
        for name, (weights, method, reduce) in QUANTIZATIONS.items():
            rows[name] = Path(tmp) / f"{len(rows)}.onnx"
            quantize_static(str(prepared), str(rows[name]), _Faces(faces), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=weights, calibrate_method=method, reduce_range=reduce)
        for name, path in rows.items():
            top = EmotionClassifier(path).predict_proba(public.pixels).argmax(1)
            table.add_row(name, f"{(top == reference).mean():.2%}", f"{(top == public.labels).mean():.2%}",
                          f"{path.stat().st_size / 1e6:.1f}", f"{onnx_latency(path, 1, threads):.2f}", f"{onnx_latency(path, 32, threads):.3f}")
    return table


# --- pipeline: decode, detect, classify, track, draw on 640x480 video ----------------------------

def make_videos(source: Path, folder: Path, frames: int) -> dict[str, Path]:
    """640x480 clips with 1 and 5 faces, `frames` long (the source is looped if shorter)."""
    cap = cv2.VideoCapture(str(source))
    one = cv2.VideoWriter(str(folder / "one.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    five = cv2.VideoWriter(str(folder / "five.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    spots = [(13, 30), (220, 30), (427, 30), (116, 260), (323, 260)]
    for _ in range(frames):
        ok, frame = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = cap.read()
        one.write(cv2.resize(frame[:, 107:747], (640, 480)))  # centre 640x480 of the 854x480 frame
        canvas = np.full((480, 640, 3), 235, np.uint8)
        head = cv2.resize(frame[40:340, 295:595], (200, 200))  # the face and some of its surroundings
        for x, y in spots:
            canvas[y : y + 200, x : x + 200] = head
        five.write(canvas)
    one.release()
    five.release()
    return {"1 face": folder / "one.mp4", "5 faces": folder / "five.mp4"}


def run_pipeline(video: Path, recognizer: EmotionRecognizer, detect_every: int) -> dict[str, float]:
    source, stream = Video(video), recognizer.stream(detect_every)
    drawing = 0.0
    faces_seen = 0
    start = time.perf_counter()
    for frame, faces in recognize_source(source, stream):
        t = time.perf_counter()
        canvas = draw(frame.image, faces)
        draw_fps(canvas, 0.0)
        drawing += time.perf_counter() - t
        faces_seen += len(faces)
    wall, n = time.perf_counter() - start, source.read
    ms = {k: v * 1000 / n for k, v in stream.seconds.items()}
    return {"decode": source.seconds * 1000 / n, **ms, "draw": drawing * 1000 / n, "faces": faces_seen / n, "fps": n / wall}


def pipeline_table(video: Path, frames: int = 300, model: Sequence[str] | None = None, detect_size: int = STREAM_DETECT_SIZE,
                   peer: str | None = None) -> Table:
    """Both test videos through every detector, searching every frame, every 5th and every 10th
    (the default of `ferkit video` and `ferkit webcam`), at their default detection size. With
    `peer` (a Python that has the `fer` package, see benchmarks/peer_setup.sh), fer runs on the
    same clips in the same run and the caption gives the frame-rate ratios."""
    table = Table(title=f"ferkit pipeline, 640x480 video, detection at {detect_size} px, {os.cpu_count()} CPU cores (ms per frame)")
    for column in ("detector", "video", "detect every", "faces/frame", "decode", "detect", "follow", "classify", "track", "draw", "FPS"):
        table.add_column(column, justify="right")
    fps: dict[tuple[str, str, int], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        videos = make_videos(video, Path(tmp), frames)
        for name in sorted(DETECTORS):
            recognizer = EmotionRecognizer(model=model, detector=name, detect_size=detect_size)
            for label, path in videos.items():
                for every in (1, 5, 10):
                    r = run_pipeline(path, recognizer, every)
                    fps[name, label, every] = r["fps"]
                    table.add_row(name, label, str(every), f"{r['faces']:.2f}",
                                  *(f"{r[k]:.2f}" for k in ("decode", "detect", "follow", "classify", "track", "draw")), f"{r['fps']:.1f}")
        if peer:
            ratios, default = [], RecognizerConfig().detector
            for label, path in videos.items():
                r = run_peer(peer, path)
                table.add_row(f"fer {r['version']} (peer)", label, "1", f"{r['faces']:.2f}", *["-"] * 6, f"{r['fps']:.1f}")
                ratios.append(f"{label}: ferkit {default} {fps[default, label, 10] / r['fps']:.1f}x fer's FPS "
                              f"({fps[default, label, 1] / r['fps']:.1f}x searching every frame like fer)")
            table.caption = "; ".join(ratios)
    return table


PEER_FER = """
import json, sys, time, cv2, fer
from fer.fer import FER
recognizer = FER()  # its defaults: OpenCV's Haar cascade on the full frame, its TFLite mini-Xception
cap, n, faces = cv2.VideoCapture(sys.argv[1]), 0, 0
start = time.perf_counter()
while True:
    ok, frame = cap.read()
    if not ok:
        break
    found = recognizer.detect_emotions(frame)
    for face in found:
        x, y, w, h = face["box"]
        cv2.rectangle(frame, (x, y), (x + w, y + h), (0, 255, 0), 2)
        cv2.putText(frame, max(face["emotions"], key=face["emotions"].get), (x, y - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 2)
    n, faces = n + 1, faces + len(found)
print(json.dumps({"fps": n / (time.perf_counter() - start), "faces": faces / max(n, 1), "version": fer.__version__}))
"""


def run_peer(python: str, video: Path) -> dict:
    """Decode, detect, classify and draw with the `fer` package, in the interpreter that has it."""
    done = subprocess.run([python, "-c", PEER_FER, str(video)], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise FerkitError(f"the peer benchmark failed with {python}: {last} (see benchmarks/peer_setup.sh)")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- detect: recall, false alarms, speed and framing on faces at known places ----------------------

HIT_IOU = 0.4  # a detection finds a face when its box and the face's known square overlap by this IoU or more,
# or when either lies this much inside the other and is at least this share of its side: some of
# FER2013's crops hold the face in less than half of the square, others cut its forehead and chin
# off, and a box of the face is a hit either way.
INSIDE, INSIDE_SIDE = 0.8, 0.4
SIDE_BINS = (30, 60, 120, 301)  # recall by the face's side in pixels: 30-59, 60-119, 120-300
PHOTOS = ("coffee", "chelsea", "rocket")  # scikit-image photos without people: scene backgrounds
# Framing grid: crop side over the detector's box side (margin m per side is scale 1 + 2m), and the
# crop's centre moved down by a share of the box's height.
SCALES = (0.9, 1.0, 1.1, 1.2, 1.3, 1.4)
OFFSETS = (-0.1, -0.05, 0.0, 0.05, 0.1)
ZOOM = 2.0  # the zoomed search the table shows beside the default one (`--detect-zoom`): on PublicTest scenes 2.5 and 3 found no more faces


def finds(box: Box, known: Box) -> bool:
    """Whether a detected box finds the face whose known square is `known` (HIT_IOU, INSIDE): a box
    of a face smaller than its square lies inside it; one of a face larger (cut off by a close crop)
    holds the square and centres on its middle half."""
    def inside(a: Box, b: Box) -> bool:
        return intersection(a, b) >= INSIDE * a[2] * a[3] and min(a[2:]) >= INSIDE_SIDE * max(b[2:])

    x, y, w, h = box
    off_centre = max(abs(x + w / 2 - known[0] - known[2] / 2), abs(y + h / 2 - known[1] - known[3] / 2))
    return iou(box, known) >= HIT_IOU or inside(box, known) or (inside(known, box) and off_centre <= known[2] / 4)


def match(boxes: Sequence[Box], found: Sequence[Detection]) -> dict[int, int]:
    """Which detection found which face: {face: detection}, best IoU first, each used once."""
    pairs = sorted(((iou(d.box, b), i, j) for i, b in enumerate(boxes) for j, d in enumerate(found) if finds(d.box, b)), reverse=True)
    hits: dict[int, int] = {}
    for _, i, j in pairs:
        if i not in hits and j not in hits.values():
            hits[i] = j
    return hits


def framings(gray: np.ndarray, detection: Detection, align: bool) -> np.ndarray:
    """The 48x48 crops of one detection's box at every scale and offset of the framing grid, scale
    by scale, turned upright by its landmarks (`align`) as the pipeline turns it."""
    if align and detection.landmarks:
        return np.stack([upright_face(gray, detection.box, detection.landmarks, (s - 1) / 2, o) for s in SCALES for o in OFFSETS])
    return np.stack([crop_face(gray, detection.box, (s - 1) / 2, o) for s in SCALES for o in OFFSETS])


@dataclass
class SceneResults:
    """What a recognizer made of composed scenes, face by face (`faces` index the faces they were made of)."""

    faces: list[int] = field(default_factory=list)
    sides: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)  # the pipeline's label id where the face was found, else -1
    pairs: list[tuple[Box, Box]] = field(default_factory=list)  # (known square, detected box) of each face found
    framed: list[np.ndarray] = field(default_factory=list)  # each face found: its framing grid's crops
    squares: list[np.ndarray] = field(default_factory=list)  # every face: the crop of its known square (a perfect detector's)
    images: int = 0
    false_alarms: int = 0
    seconds: float = 0.0  # in the detector

    @property
    def found(self) -> np.ndarray:
        return np.array(self.labels) >= 0


def run_scenes(recognizer: EmotionRecognizer, scenes: Iterable[Scene], searched: list | None = None,
               counted: np.ndarray | None = None) -> SceneResults:
    """Detect and classify each scene as `predict` does (timing the detector), and match the faces
    found to the known ones. `searched` holds each scene's (detections, seconds): an empty list is
    filled, a filled one is used instead of searching again, for recognizers that only crop or
    classify differently (--no-align, --no-views). Faces whose `counted` (by the index of the face a
    scene was made of) is False are left out: neither found nor missed, and a box on one no false alarm."""
    r = SceneResults()
    for j, scene in enumerate(scenes):
        gray = to_gray(scene.image)
        if searched is not None and j < len(searched):
            detections, seconds = searched[j]
        else:
            start = time.perf_counter()
            detections = recognizer.detect(scene.image, gray)
            seconds = time.perf_counter() - start
            if searched is not None:
                searched.append((detections, seconds))
        r.seconds += seconds
        faces = recognizer.classify(gray, detections)
        hits = match(scene.boxes, faces)
        r.images += 1
        r.false_alarms += len(faces) - len(hits)
        for i, (k, box) in enumerate(zip(scene.faces, scene.boxes)):
            if counted is not None and not counted[k]:
                continue
            r.faces.append(k)
            r.sides.append(box[2])
            r.labels.append(recognizer.labels.index(faces[hits[i]].label) if i in hits else -1)
            r.squares.append(crop_face(gray, box))
            if i in hits:
                r.pairs.append((box, faces[hits[i]].box))
                r.framed.append(framings(gray, detections[hits[i]], recognizer.config.align))
    return r


def one_face_images(recognizer: EmotionRecognizer, images: Sequence[np.ndarray]) -> tuple[int, int, float]:
    """Images that hold one face each: how many had a detection, the detections beyond one, and seconds in the detector."""
    found = extra = 0
    seconds = 0.0
    for image in images:
        start = time.perf_counter()
        n = len(recognizer.detect(image, to_gray(image)))
        seconds += time.perf_counter() - start
        found, extra = found + (n > 0), extra + max(0, n - 1)
    return found, extra, seconds


def video_frames(video: Path, count: int) -> list[np.ndarray]:
    """`count` frames spread evenly over a video, each the centre 640x480 of its frame (resized if smaller)."""
    cap = cv2.VideoCapture(str(video))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    wanted = set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist())
    frames = []
    for i in range(total):
        ok, frame = cap.read()
        if not ok:
            break
        if i in wanted:
            h, w = frame.shape[:2]
            x, y = max(0, (w - 640) // 2), max(0, (h - 480) // 2)
            frames.append(cv2.resize(frame[y : y + 480, x : x + 640], (640, 480)))
    return frames


def photos(*names: str) -> list[np.ndarray]:
    """scikit-image's sample photos by name, as BGR."""
    from skimage import data  # a test extra: only the detection benchmark and its tests draw on these photos

    return [cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR) for name in names]


def percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}" if whole else "-"


def detect_tables(data: Path, video: Path, scenes: int = 200, frames: int = 300, model: Sequence[str] | None = None,
                  seed: int = 0, split: str = "PrivateTest", ferplus: Path | None = None) -> Group:
    """Every detector through `predict`'s steps on `scenes` composed 640x480 scenes of `split`'s
    faces (`scenes.random_scene`: 30-300 px, turned, cut by the edge, on flat, noisy, gradient and
    photo backgrounds, darker and brighter), on `frames` frames of the talking-face video and on the
    astronaut photo. The first table: recall, false alarms, detector ms per image, and scene
    accuracy: faces found and given the classifier's answer on the original 48x48 face (and the
    FER2013 label, beside the classifier's own accuracy on those originals). The second: how often
    crops of the detected box at other scales and offsets agree with the original face; its caption
    gives, per detector, how often the faces found get their label from the pipeline, from their
    known squares and from their originals, which splits the scene's lost labels into missed faces
    and faces changed by the scene. With `ferplus` (fer2013new.csv), the images FER+ calls no face
    are drawn into the scenes as the rest but not counted: a black square or an icon is no face to find."""
    every = load(data)
    test = every.split(split)
    counted = None if ferplus is None else ferplus_faces(ferplus, len(every))[every.usage == SPLITS.index(split)]
    backgrounds, astronaut = photos(*PHOTOS), *photos("astronaut")
    clip = video_frames(video, frames)
    bins = [f"{a}-{b - 1} px %" for a, b in zip(SIDE_BINS, SIDE_BINS[1:])]
    detection = Table(title=f"Detection: composed 640x480 scenes of {split} faces (seed {seed}"
                            f"{'; not counted: the images FER+ calls no face' if ferplus else ''}), frames of the talking-face "
                            f"video, the astronaut photo; {os.cpu_count()} CPU cores",
                      caption=f"A composed face is found by a detection whose box has IoU >= {HIT_IOU} with its known square, or lies "
                              f"{INSIDE:.0%} inside it and is {INSIDE_SIDE:.0%} of its side or more, or holds the square so and "
                              "centres on its middle half; in the "
                              "video frames and the photo (one face each) an image with any detection counts as found and each "
                              "detection beyond one as a false alarm. Scene accuracy: the share of all faces found and labelled as "
                              "the classifier labels the original 48x48 face; 'where found': of the faces found; 'labels': the share "
                              "found and given the FER2013 label; the classifier's accuracy on each face's known square cut from the "
                              "scene (what a perfect detector with FER2013's framing would score) and on the originals.")
    for column in ("detector", "images", "faces", "recall %", *bins, "false alarms /image", "detect ms /image",
                   "scene acc. %", "where found %", "labels: scene %", "labels: known squares %", "labels: originals %"):
        detection.add_column(column, justify="right", no_wrap=column in ("detector", "images"))
    framing = Table(title="Framing: faces found whose crop agrees with the classifier on the original face (%)")
    for column in ("detector", "crop scale", *(f"{o:+.2f} down" for o in OFFSETS)):
        framing.add_column(column, justify="right", no_wrap=column == "detector")
    captions = []
    # Each detector as the pipeline runs it, and the default one with --no-align, --no-views and a zoomed search too.
    default = RecognizerConfig().detector
    variants = [(name, {}) for name in DETECTORS] + [(f"{default} --no-align", {"align": False}), (f"{default} --no-views", {"views": False}),
                                                     (f"{default} --detect-zoom {ZOOM:g}", {"detect_zoom": ZOOM})]
    # Variants that differ only after the search (--no-align, --no-views) reuse the default's: its
    # detections and seconds per scene, and its counts on the frames and the photo.
    searches: dict[tuple, list] = {}
    one_face: dict[tuple, tuple[int, int, float]] = {}
    for name, options in sorted(variants):
        recognizer = EmotionRecognizer(model=model, detector=name.split()[0], **options)
        search = (recognizer.config.detector, recognizer.config.detect_zoom)
        r = run_scenes(recognizer, random_scenes(test.pixels, scenes, seed, backgrounds), searches.setdefault(search, []), counted)
        faces, labels, found, sides = np.array(r.faces, int), np.array(r.labels), r.found, np.array(r.sides)
        reference, truth = recognizer.classifier.predict_proba(test.pixels[faces]).argmax(1), test.labels[faces]
        bands = [(a, b, (sides >= a) & (sides < b)) for a, b in zip(SIDE_BINS, SIDE_BINS[1:])]
        by_side = [percent(found[m].sum(), m.sum()) for _, _, m in bands]
        agree = found & (labels == reference)
        squares = recognizer.classifier.predict_proba(np.stack(r.squares)).argmax(1)  # a perfect detector's answers
        detection.add_row(name, f"{r.images} scenes", str(len(faces)), percent(found.sum(), len(faces)), *by_side,
                          f"{r.false_alarms / r.images:.3f}", f"{r.seconds * 1000 / r.images:.1f}", percent(agree.sum(), len(faces)),
                          percent(agree.sum(), found.sum()), percent((found & (labels == truth)).sum(), len(faces)),
                          percent((squares == truth).sum(), len(faces)), percent((reference == truth).sum(), len(faces)))
        for kind, images in (("frames", clip), ("photo", [astronaut])):
            if (search, kind) not in one_face:
                one_face[search, kind] = one_face_images(recognizer, images)
            hit, extra, seconds = one_face[search, kind]
            detection.add_row(name, f"{len(images)} {kind}", str(len(images)), percent(hit, len(images)), *["-"] * len(bins),
                              f"{extra / len(images):.3f}", f"{seconds * 1000 / len(images):.1f}", *["-"] * 5,
                              end_section=kind == "photo")
        if r.framed:
            crops = np.concatenate(r.framed)
            answers = recognizer.classifier.predict_proba(crops).argmax(1).reshape(len(r.framed), -1)
            agreement = (answers == reference[found][:, None]).mean(0) * 100
            grid = agreement.reshape(len(SCALES), len(OFFSETS))
            best = np.unravel_index(grid.argmax(), grid.shape)
            for i, scale in enumerate(SCALES):
                framing.add_row(name, f"{scale:.1f}", *(f"{v:.1f}" + ("*" if (i, j) == best else "") for j, v in enumerate(grid[i])),
                                end_section=i == len(SCALES) - 1)
            known, box = np.array([p[0] for p in r.pairs], float), np.array([p[1] for p in r.pairs], float)
            # Where the loss lies by size: a face drawn under 48 px keeps fewer pixels than its original.
            found_by_band = [(a, b, found & m) for a, b, m in bands]
            by_band = ", ".join(f"{a}-{b - 1} px {percent((labels == truth)[m].sum(), m.sum())}% against "
                                f"{percent((reference == truth)[m].sum(), m.sum())}%" for a, b, m in found_by_band)
            captions.append(f"{name}: the known square itself {(squares == reference)[found].mean() * 100:.1f}%; the faces found given their "
                            f"label {(labels == truth)[found].mean() * 100:.1f}%, by their known squares {(squares == truth)[found].mean() * 100:.1f}%, "
                            f"by their originals {(reference == truth)[found].mean() * 100:.1f}% (by side, their label against their "
                            f"originals': {by_band}); median known side / box side "
                            f"{np.median(known[:, 2] / box[:, 3]):.2f}, known centre below the box's by "
                            f"{np.median((known[:, 1] + known[:, 3] / 2 - box[:, 1] - box[:, 3] / 2) / box[:, 3]):+.3f} of its height")
    framing.caption = ("Crops of the detected box, scaled (margin m per side is scale 1 + 2m) and moved down by a share of its "
                       "height, and turned upright by the landmarks where the detector aligns (as the pipeline does); "
                       "* the best cell; the default crop is scale 1.0, +0.00 (margin 0). " + "; ".join(captions))
    return Group(detection, framing)


# --- landmarks: where FER2013's faces have their eyes, nose and mouth --------------------------------

TEMPLATE_FACES = 2000  # Training faces (drawn with seed 0) whose landmarks make `classify.FER_LANDMARKS`
LANDMARK_NAMES = ("eye (image left)", "eye (image right)", "nose", "mouth (image left)", "mouth (image right)")


def fer_landmarks(faces: np.ndarray, detector: CenterFaceDetector, upscale: int = 3) -> np.ndarray:
    """CenterFace's landmarks on 48x48 faces, in the pixels of the 48x48 face (N x 5 x 2; faces
    where it finds none are left out): each face enlarged `upscale` times (cubic) onto a border of
    its mean grey as wide as the face, since CenterFace learned faces with a head around them."""
    points = []
    side = IMAGE_SIZE * upscale
    for face in faces:
        big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
        big = cv2.copyMakeBorder(big, side // 2, side // 2, side // 2, side // 2, cv2.BORDER_CONSTANT, value=int(face.mean()))
        found = [d for d in detector(big) if d.landmarks and iou(d.box, (side // 2, side // 2, side, side)) > 0.3]
        if found:
            best = max(found, key=lambda d: d.score)
            points.append((np.array(best.landmarks) - side // 2 + 0.5) / upscale - 0.5)  # resize's pixel centres
    return np.array(points).reshape(-1, 5, 2)


def symmetric(points: np.ndarray) -> np.ndarray:
    """Five landmarks averaged with their mirror image (x -> 47 - x, image left and right swapped)."""
    mirror = points[[1, 0, 2, 4, 3]] * (-1, 1) + (IMAGE_SIZE - 1, 0)
    return (points + mirror) / 2


def landmarks_table(data: Path, count: int = TEMPLATE_FACES) -> Table:
    """The FER2013 landmark template: CenterFace's landmarks on `count` Training faces, their median
    and spread, the symmetric template `classify.FER_LANDMARKS` holds, and what it is now."""
    faces = load(data).split("Training").pixels
    chosen = faces[np.sort(np.random.default_rng(0).choice(len(faces), count, replace=False))]
    points = fer_landmarks(chosen, CenterFaceDetector(min_size=10, max_side=2 * IMAGE_SIZE * 3))
    median = np.median(points, 0)
    spread = np.median(np.abs(points - median), 0)
    template = symmetric(median)
    table = Table(title=f"FER2013 landmarks: CenterFace on {len(points)} of {count} Training faces (x, y in the 48x48 face's pixels)",
                  caption="FER_LANDMARKS = np.array(" + repr(np.round(template, 2).tolist()) + ")")
    for column in ("landmark", "median", "median abs. deviation", "template (symmetric)", "in classify.py"):
        table.add_column(column, justify="right")
    for name, m, d, t, now in zip(LANDMARK_NAMES, median, spread, template, FER_LANDMARKS):
        table.add_row(name, *(f"{a:.2f}, {b:.2f}" for a, b in (m, d, t, now)))
    return table


# --- server: concurrent clients on loopback -------------------------------------------------------

def memory_mb(pid: int, field: str = "VmHWM") -> float:
    """A process's memory from /proc: its peak resident size (VmHWM) or its resident size now (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def running_server(*options: str) -> Iterator[tuple[int, subprocess.Popen]]:
    """`ferkit serve` in its own process on a free loopback port (so its memory is the server's
    alone), answering /health before the caller's load starts; stopped on the way out."""
    import httpx  # the HTTP client: only the server benchmarks need it

    port = free_ports(1)[0]
    server = subprocess.Popen([sys.executable, "-m", "ferkit.cli", "serve", "--port", str(port), *options], stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield port, server
    finally:
        server.terminate()
        server.wait(10)


async def post_clients(url: str, image: bytes, clients: int, seconds: float) -> tuple[list[float], int, int]:
    import httpx  # a test extra: only the server benchmark needs a client

    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                r = await http.post(url, content=image, headers={"content-type": "image/jpeg"})
                ok = r.status_code == 200 and len(r.json()["faces"]) == 1
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return latencies, errors, len(latencies) + errors


def server_table(clients: int = 50, seconds: float = 30, image: Path = ASSETS / "sample.jpg") -> Table:
    """Starts `ferkit serve` in its own process on a free loopback port, so its peak memory
    (VmHWM) is the server's alone, and loads it with `clients` concurrent clients."""
    with running_server() as (port, server):
        started = time.perf_counter()
        latencies, errors, total = asyncio.run(post_clients(f"http://127.0.0.1:{port}/api/v1/predict", image.read_bytes(), clients, seconds))
        wall = time.perf_counter() - started
        peak = memory_mb(server.pid)
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    table = Table(title=f"POST /api/v1/predict, {clients} clients, {seconds:.0f} s, {image.name}")
    for column in ("requests", "requests/s", "p50 ms", "p95 ms", "p99 ms", "errors", "server peak MB"):
        table.add_column(column, justify="right")
    table.add_row(str(total), f"{len(latencies) / wall:.1f}", *(f"{np.percentile(ms, q):.0f}" for q in (50, 95, 99)), str(errors), f"{peak:.0f}")
    return table


# --- memory: peak resident memory of each verb, each in its own process ---------------------------

def peak_memory(args: list[str]) -> tuple[float, float]:
    """Run `ferkit ARGS` in a child process; return its peak resident memory in MB (the kernel's
    ru_maxrss for that child, read by wait4: the child's own, not the benchmark's) and its seconds."""
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "ferkit.cli", *map(str, args)], stdout=subprocess.DEVNULL, stderr=log)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            log.seek(0)
            last = (log.read().decode(errors="replace").strip().splitlines() or ["no message"])[-1]
            raise FerkitError(f"ferkit {' '.join(map(str, args))} failed: {last}")
    return usage.ru_maxrss / 1024, seconds  # Linux gives kB


def memory_table(data: Path, video: Path, frames: int = 300) -> Table:
    """Peak memory of the verbs that take the most: `evaluate` (with and without --tta) on
    PrivateTest, `video` on a 640x480 clip with five faces, `predict --tta` on the sample photo.
    (`ferkit benchmark server` gives the server's.)"""
    table = Table(title=f"peak resident memory, each command in its own process, {os.cpu_count()} CPU cores")
    for column in ("command", "seconds", "peak MB"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_videos(video, Path(tmp), frames)["5 faces"]
        commands = [
            ["predict", "--tta", ASSETS / "sample.jpg"],
            ["video", clip, "--out", Path(tmp) / "annotated.mp4", "--csv", Path(tmp) / "frames.csv"],
            ["evaluate", "--data", data, "--split", "PrivateTest"],
            ["evaluate", "--data", data, "--split", "PrivateTest", "--tta"],
        ]
        for args in commands:
            peak, seconds = peak_memory(args)
            shown = " ".join(Path(a).name if isinstance(a, Path) else a for a in args)
            table.add_row(f"ferkit {shown}", f"{seconds:.1f}", f"{peak:.0f}")
    return table


# --- soak: well-behaved clients beside slow and malicious ones, for minutes ------------------------

def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of zeros: 50 KB at 20000x20000, 1.2 GB once decoded to BGR."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row, z = b"\x00" * (1 + (width + 7) // 8), zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bad_requests(port: int) -> dict[str, tuple[int, bytes, bytes, float]]:
    """What the malicious and slow clients send, by kind: (expected status, head, body, seconds
    between 1 KB pieces of the body; 0 sends it at once). A body shorter than its Content-Length
    is left hanging: the server must time it out."""
    ok, tiny = cv2.imencode(".png", np.zeros((5, 5), np.uint8))
    host = f"127.0.0.1:{port}"

    def head(length: int, *extra: str) -> bytes:
        lines = ["POST /api/v1/predict HTTP/1.1", f"Host: {host}", "Content-Type: image/png", f"Content-Length: {length}", *extra]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    bomb, noise, sample = png_bomb(20000, 20000), np.random.default_rng(0).bytes(65536), (ASSETS / "sample.jpg").read_bytes()
    return {
        "bomb": (413, head(len(bomb)), bomb, 0),
        "oversized": (413, head(50 * 1024 * 1024), noise, 0),
        "not an image": (415, head(len(noise)), noise, 0),
        "tiny": (422, head(len(tiny)), tiny.tobytes(), 0),
        "cross-origin": (403, head(len(sample), "Origin: http://attacker.example"), sample, 0),
        "foreign host": (400, head(len(sample)).replace(host.encode(), b"attacker.example"), sample, 0),
        "slow (1 KB/s)": (408, head(1024 * 1024), bytes(1024 * 1024), 1.0),
        "stalled at 9 of 10 MB": (408, head(10 * 1024 * 1024), bytes(9 * 1024 * 1024), 0),
    }


async def bad_request(port: int, head: bytes, body: bytes, drip: float) -> int:
    """Send one request the way a bad client does; return the status the server answered with."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.ensure_future(reader.readline())
    try:
        writer.write(head)
        for i in range(0, len(body), 1024 if drip else len(body)):
            if answer.done():
                break
            writer.write(body[i : i + (1024 if drip else len(body))])
            await writer.drain()
            await asyncio.sleep(drip)
        return int((await answer).split()[1])
    finally:
        answer.cancel()
        writer.close()


async def soak(port: int, pid: int, clients: int, seconds: float, windows: int) -> tuple[list[dict], dict[str, list[int]]]:
    """Run the well-behaved clients, the bad ones and a health probe; collect latencies, errors (a
    failed health check counts as one) and the server's memory per time window."""
    import httpx

    start = time.perf_counter()
    stop = start + seconds
    rows = [{"ok": [], "errors": 0, "health": [], "bad": 0, "unexpected": 0, "mb": 0.0} for _ in range(windows)]
    statuses: dict[str, list[int]] = {}

    def window() -> dict:
        return rows[min(windows - 1, int((time.perf_counter() - start) / seconds * windows))]

    async def client(http: httpx.AsyncClient, image: bytes) -> None:
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                r = await http.post("/api/v1/predict", content=image, headers={"content-type": "image/jpeg"})
                ok = r.status_code == 200 and len(r.json()["faces"]) == 1
            except httpx.HTTPError:
                ok = False
            if ok:
                window()["ok"].append(time.perf_counter() - t)
            else:
                window()["errors"] += 1

    async def bad(kind: str, expected: int, head: bytes, body: bytes, drip: float) -> None:
        while time.perf_counter() < stop:
            try:
                status = await bad_request(port, head, body, drip)
            except (OSError, ValueError, IndexError):
                status = 0  # the connection broke without an answer
            statuses.setdefault(kind, []).append(status)
            window()["bad" if status == expected else "unexpected"] += 1
            await asyncio.sleep(0.2)

    async def probe(http: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                await http.get("/api/v1/health")
            except httpx.HTTPError:
                window()["errors"] += 1
            window()["health"].append(time.perf_counter() - t)
            await asyncio.sleep(0.5)

    async def memory() -> None:
        while time.perf_counter() < stop:
            w = window()
            w["mb"] = max(w["mb"], memory_mb(pid, "VmRSS"))
            await asyncio.sleep(0.5)

    image = (ASSETS / "sample.jpg").read_bytes()
    # One client of each bad kind, two of each kind that holds its connection open (trickling, stalled).
    bad_clients = [(kind, *request) for kind, request in bad_requests(port).items() for _ in range(2 if request[0] == 408 else 1)]
    limits = httpx.Limits(max_connections=clients + 1, max_keepalive_connections=clients + 1)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits) as http:
        await asyncio.gather(*(client(http, image) for _ in range(clients)), *(bad(*b) for b in bad_clients), probe(http), memory())
    return rows, statuses


def soak_table(clients: int = 32, seconds: float = 120, windows: int = 8, upload_timeout: float = 30.0) -> Table:
    """`ferkit serve` in its own process, loaded for `seconds` by `clients` well-behaved clients posting
    the sample photo while bad clients send bombs, oversized and non-image bodies, tiny images,
    cross-origin and foreign-host requests, and bodies that trickle in or stall. One row per time
    window: the good clients' answers and latency, the health probe's slowest answer, the bad
    requests refused as they should be (and any that were not), and the server's memory."""
    with running_server("--upload-timeout", str(upload_timeout)) as (port, server):
        rows, statuses = asyncio.run(soak(port, server.pid, clients, seconds, windows))
        peak = memory_mb(server.pid)
    kinds = ", ".join(f"{kind} {sorted(set(codes))}" for kind, codes in statuses.items())
    table = Table(title=f"Soak: {clients} clients posting sample.jpg for {seconds:.0f} s beside {len(statuses)} kinds of bad client",
                  caption=f"bad clients' answers: {kinds}; server peak {peak:.0f} MB")
    for column in ("seconds", "answered", "errors", "p50 ms", "p95 ms", "p99 ms", "health max ms", "bad refused", "bad not refused", "server MB"):
        table.add_column(column, justify="right")
    span = seconds / windows
    for i, row in enumerate(rows):
        table.add_row(f"{i * span:.0f}-{(i + 1) * span:.0f}", *soak_cells(row))
    whole = {"ok": sum((r["ok"] for r in rows), []), "health": sum((r["health"] for r in rows), []),
             **{k: sum(r[k] for r in rows) for k in ("errors", "bad", "unexpected")}, "mb": max(r["mb"] for r in rows)}
    table.add_row("all", *soak_cells(whole), end_section=True)
    return table


def soak_cells(row: dict) -> list[str]:
    ms = np.array(row["ok"]) * 1000 if row["ok"] else np.array([np.nan])
    health = max(row["health"]) * 1000 if row["health"] else float("nan")
    return [str(len(row["ok"])), str(row["errors"]), *(f"{np.percentile(ms, q):.0f}" for q in (50, 95, 99)), f"{health:.0f}",
            str(row["bad"]), str(row["unexpected"]), f"{row['mb']:.0f}"]


# --- batch: `ferkit batch` on Ray, against predict and video in one process ----------------------

BATCH_CHUNK_SECONDS = 5.0  # the clip's chunks: several a clip, so the workers share it (each but the first with 1 s of warm-up)


def batch_inputs(data: Path, video: Path, folder: Path, scenes: int, frames: int) -> tuple[list[Path], Path]:
    """`scenes` composed 640x480 scenes of PrivateTest faces as JPEGs, and a 640x480 one-face clip `frames` long."""
    faces = load(data).split("PrivateTest").pixels
    images = []
    for i, scene in enumerate(random_scenes(faces, scenes)):
        images.append(folder / f"scene{i:05}.jpg")
        cv2.imwrite(str(images[-1]), scene.image)
    return images, make_videos(video, folder, frames)["1 face"]


def batch_jobs(images: list[Path], clip: Path, frames: int, folder: Path, config: RecognizerConfig, workers: int) -> list[str]:
    """One row's cells: `ferkit batch` on the images, then on the clip, each a job of its own on
    the Ray this process has joined; the job's overhead is its wall time less its workers' busy
    time a worker (Ray Data's plan, the actors loading their recognizers, handing out units and
    writing parts), and a worker's time per item is its busy time."""
    from .batch import run_batch  # Ray and pyarrow: the `batch` extra, which only this table needs

    cells = []
    for name, sources, count in (("images", images, len(images)), ("video", [clip], frames)):
        started = time.perf_counter()
        summary = run_batch(sources, folder / f"{name}-{workers}-{time.monotonic_ns()}", config, workers=workers,
                            chunk_seconds=BATCH_CHUNK_SECONDS, warn=lambda message: None)
        wall = time.perf_counter() - started
        cells.append((count / wall, wall - summary["work_seconds"] / workers, summary["work_seconds"] * 1000 / count))
    return [f"{cells[0][0]:.1f}", f"{cells[1][0]:.1f}", f"{cells[0][1]:.1f}", f"{cells[1][1]:.1f}", f"{cells[0][2]:.1f}", f"{cells[1][2]:.2f}"]


def ray_rows(address: str | None, workers: Sequence[int], images: list[Path], clip: Path, frames: int, folder: Path,
             config: RecognizerConfig) -> tuple[float, list[list[str]]]:
    """Start Ray here (no `address`) or join the cluster at `address`, then time `batch_jobs` with
    each number of workers; returns the seconds Ray took to start or join, and the rows' cells.
    Run in a process of its own: Ray Data keeps state from one Ray to the next in a process."""
    import ray  # the `batch` extra, as above

    from .batch import connect

    started = time.perf_counter()
    connect(address, None)  # as `ferkit batch` starts or joins Ray
    start = time.perf_counter() - started
    try:
        return start, [batch_jobs(images, clip, frames, folder, config, n) for n in workers]
    finally:
        ray.shutdown()


def batch_table(data: Path, video: Path, scenes: int = 200, frames: int = 600, model: Sequence[str] | None = None,
                workers: Sequence[int] = (1, 2), nodes: int = 2) -> Table:
    """`predict` and `video` in this process (one ONNX Runtime and one OpenCV thread, as a worker has), then
    `ferkit batch` with each of `workers` on Ray started here (embedded, all cores), then with
    1..`nodes` workers on a local cluster of `nodes` one-CPU nodes (`cluster.local_cluster`):
    images/s and frames/s as a user sees them (start-up included), each job's overhead, and a
    worker's ms per image and per frame. The caption gives Ray's start-up."""
    config = RecognizerConfig(model=model)
    table = Table(title=f"ferkit batch on Ray: {scenes} 640x480 scenes, a {frames}-frame 640x480 clip in {BATCH_CHUNK_SECONDS:.0f} s "
                        f"chunks; {os.cpu_count()} CPU cores")
    for column in ("run", "workers", "images/s", "frames/s", "overhead s (images)", "overhead s (video)", "ms/image a worker",
                   "ms/frame a worker"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp, get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        folder = Path(tmp)
        images, clip = batch_inputs(data, video, folder, scenes, frames)
        recognizer, cv_threads = EmotionRecognizer(config, threads=1), cv2.getNumThreads()
        cv2.setNumThreads(1)  # and one OpenCV thread: one core, as a worker has
        try:
            image_seconds = -time.perf_counter()
            predict(images, recognizer, folder / "predict.jsonl", warn=lambda message: None)
            image_seconds += time.perf_counter()
            video_seconds = process_video(clip, recognizer, results=folder / "video.jsonl", progress=False)["seconds"]
        finally:
            cv2.setNumThreads(cv_threads)
        table.add_row("predict, video (one process)", "1", f"{scenes / image_seconds:.1f}", f"{frames / video_seconds:.1f}", "-", "-",
                      f"{image_seconds * 1000 / scenes:.1f}", f"{video_seconds * 1000 / frames:.2f}", end_section=True)
        start, rows = pool.apply(ray_rows, (None, workers, images, clip, frames, folder, config))
        starts = [f"embedded Ray {start:.1f} s"]
        for n, cells in zip(workers, rows):
            table.add_row("batch, this machine", str(n), *cells, end_section=n == workers[-1])
        if nodes:
            started = time.perf_counter()
            with local_cluster(nodes, cpus=1) as address:
                nodes_up = time.perf_counter() - started
                start, rows = pool.apply(ray_rows, (address, range(1, nodes + 1), images, clip, frames, folder, config))
            starts.append(f"a {nodes}-node cluster {nodes_up:.1f} s (`ray start` x{nodes}), joining it {start:.1f} s")
            for n, cells in enumerate(rows, 1):
                table.add_row(f"batch, {nodes}-node cluster", str(n), *cells)
    table.caption = (f"Ray start-up: {'; '.join(starts)}. Overhead: a job's seconds less its workers' busy seconds a worker; "
                     f"a worker's ms per frame includes the 1 s of warm-up of every chunk but the first.")
    return table
