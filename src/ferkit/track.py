"""Tracking faces across video frames (greedy IoU matching) with smoothed probabilities, so labels do not flicker."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .recognize import Face


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    inter = max(0, w) * max(0, h)
    union = aw * ah + bw * bh - inter
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
