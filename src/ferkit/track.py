"""Tracking faces across video frames (greedy IoU matching) with smoothed probabilities, so labels do not flicker."""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from .results import Detection, Face


def intersection(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    """The area two (x, y, w, h) boxes share."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    inter = intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    id: int
    box: tuple[int, int, int, int]
    probs: np.ndarray
    missed: int = 0


class Tracker:
    """Give each face a stable id and an exponential moving average of its probabilities.

    `smoothing` is the weight kept from the past (0 = no smoothing); a track survives `max_missed`
    frames without a match, so a face lost for a frame or two keeps its id.
    """

    def __init__(self, iou_threshold: float = 0.3, smoothing: float = 0.6, max_missed: int = 10) -> None:
        self.iou_threshold, self.smoothing, self.max_missed = iou_threshold, smoothing, max_missed
        self.tracks: list[Track] = []
        self.next_id = 1

    def update(self, faces: list[Face]) -> list[Face]:
        pairs = sorted(
            ((iou(t.box, f.box), ti, fi) for ti, t in enumerate(self.tracks) for fi, f in enumerate(faces)), reverse=True
        )
        match: dict[int, int] = {}
        used: set[int] = set()
        for overlap, ti, fi in pairs:
            if overlap < self.iou_threshold:
                break
            if ti not in used and fi not in match:
                match[fi] = ti
                used.add(ti)
        out = []
        for fi, face in enumerate(faces):
            labels = list(face.probabilities)
            probs = np.array([face.probabilities[k] for k in labels])
            if fi in match:
                track = self.tracks[match[fi]]
                track.probs = self.smoothing * track.probs + (1 - self.smoothing) * probs
                track.box, track.missed = face.box, 0
            else:
                track = Track(self.next_id, face.box, probs)
                self.next_id += 1
                self.tracks.append(track)
                used.add(len(self.tracks) - 1)
            best = int(track.probs.argmax())
            out.append(replace(face, label=labels[best], confidence=float(track.probs[best]),
                               probabilities=dict(zip(labels, map(float, track.probs))), track_id=track.id))
        for ti, track in enumerate(self.tracks):
            if ti not in used:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return out


class Follower:
    """Keep detected boxes on moving faces between full detections, by matching each face's
    patch from the last detection (normalised cross-correlation, at 32 px) in a region around
    its last box: a few tenths of a millisecond a face, against tens of milliseconds for a full search.
    Matching against the detected patch, not the previous frame's, keeps errors from piling up.
    Scale is not followed; the next detection corrects it."""

    SIDE = 32  # template width in pixels

    def __init__(self, min_score: float = 0.5, search: float = 0.5) -> None:
        self.min_score, self.search = min_score, search  # search: extra region per side, fraction of the box
        self.faces: list[tuple[Detection, np.ndarray, float]] = []

    def reset(self, gray: np.ndarray, detections: list[Detection]) -> None:
        """Remember the faces of a frame the detector searched fully."""
        self.faces = []
        for d in detections:
            x, y, w, h = d.box
            s = self.SIDE / w
            patch = gray[max(0, y) : y + h, max(0, x) : x + w]
            if patch.shape[0] >= h // 2 and patch.shape[1] >= w // 2:  # mostly inside the frame
                self.faces.append((d, cv2.resize(patch, None, fx=s, fy=s, interpolation=cv2.INTER_AREA), s))

    def __call__(self, gray: np.ndarray) -> list[Detection]:
        """Where the remembered faces are in this frame; faces not found (left, turned away) are dropped."""
        H, W = gray.shape
        found = []
        for i, (d, patch, s) in enumerate(self.faces):
            x, y, w, h = d.box
            m = int(w * self.search)
            x0, y0, x1, y1 = max(0, x - m), max(0, y - m), min(W, x + w + m), min(H, y + h + m)
            region = cv2.resize(gray[y0:y1, x0:x1], None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if x1 > x0 and y1 > y0 else None
            if region is None or region.shape[0] < patch.shape[0] or region.shape[1] < patch.shape[1]:
                continue
            _, score, _, (px, py) = cv2.minMaxLoc(cv2.matchTemplate(region, patch, cv2.TM_CCOEFF_NORMED))
            if score < self.min_score:
                continue
            nx, ny = int(round(x0 + px / s)), int(round(y0 + py / s))
            points = d.landmarks and tuple((a + nx - x, b + ny - y) for a, b in d.landmarks)  # they move with the box
            moved = Detection((nx, ny, w, h), d.score, points)
            self.faces[i] = (moved, patch, s)
            found.append(moved)
        return found
