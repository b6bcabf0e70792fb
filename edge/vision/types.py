"""The vision seam: Detection, Candidate, the Detector protocol, its error and the label map."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge.errors import EdgeError

TRACK_FLOOR = 0.1  # detections down to this confidence feed the tracker's second stage


class DetectorError(EdgeError, RuntimeError):
    """A model that cannot be loaded or run."""


def meaning_map(labels: dict[str, list[str]]) -> dict[str, str]:
    """Lower-cased model class name → meaning; the first meaning listing a name wins."""
    out: dict[str, str] = {}
    for meaning, names in labels.items():
        for name in names:
            out.setdefault(name.lower(), meaning)
    return out


@dataclass(frozen=True)
class Candidate:
    """A detection before the label map: pixel box, confidence, class index."""

    box: tuple[float, float, float, float]
    conf: float
    cls: int


@dataclass(frozen=True)
class Detection:
    """One object in one frame; box is (x1, y1, x2, y2) normalised to 0..1."""

    track_id: int | None
    meaning: str
    cls_name: str
    conf: float
    box: tuple[float, float, float, float]


def labelled(c: Candidate, w: int, h: int, meaning: str, cls_name: str) -> Detection:
    """A frame-pixel candidate as a Detection normalised to 0..1, without a track id."""
    x1, y1, x2, y2 = (float(v) for v in np.clip(
        np.array(c.box) / np.array([w, h, w, h]), 0.0, 1.0))
    return Detection(track_id=None, meaning=meaning, cls_name=cls_name, conf=c.conf,
                     box=(x1, y1, x2, y2))


class Detector(Protocol):
    """Finds (and tracks) the objects named in the label map."""

    def predict(self, crops: Sequence[np.ndarray], imgsz: int, floor: float
                ) -> list[list[Candidate]]:
        """Candidates per crop (pixel boxes in the crop) of the label map's classes."""

    def label(self, c: Candidate, w: int, h: int) -> Detection:
        """A frame-pixel candidate as a normalised Detection with its meaning."""

    def track(self, frame: np.ndarray, detections: Sequence[Detection] | None = None
              ) -> list[Detection]:
        """Tracked detections (persisting across calls) from this frame's detections."""

    def reset(self) -> None:
        """Forget all tracks (a new video or a camera that reconnected)."""
