"""Background: a 'person' that was already there, motionless, in the enrolled empty view.

A parked car, a post or a figure painted on a sign looks the same now as in the empty view
written by `pondwatch-edge enrol` (refs/view.png), and it never moves. A real person is not
in the empty view, so the pixels under their box differ from it; one who was already there
at enrolment is caught as soon as they move.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from edge.vision.geometry import distance, foot_point
from edge.vision.types import Detection

log = logging.getLogger(__name__)

SAME_VIEW_NCC = 0.8   # crop and empty view agree this well: the same thing as at enrolment
MOVED = 0.02          # a foot point this far (share of the frame) from where it was: moved
MIN_PX = 6            # boxes smaller than this in the view (each side) cannot be judged
FLAT_STD = 4.0        # below this contrast, compare brightness instead of structure
FLAT_DIFF = 12.0      # ... and this close in grey level is the same


class Background:
    """Remembers, per track, whether it is part of the enrolled empty scene."""

    def __init__(self, view: np.ndarray | None) -> None:
        """view: the enrolled empty view in grey (any size), or None to judge nothing."""
        self.view = view
        self._first: dict[int, tuple[float, float]] = {}
        self._person: set[int] = set()

    def matches_view(self, frame: np.ndarray, box: tuple[float, float, float, float]) -> bool:
        """True when the frame under box looks like the empty view under it."""
        if self.view is None:
            return False
        vh, vw = self.view.shape[:2]
        x0, y0 = int(box[0] * vw), int(box[1] * vh)
        x1, y1 = int(round(box[2] * vw)), int(round(box[3] * vh))
        if x1 - x0 < MIN_PX or y1 - y0 < MIN_PX:
            return False
        ref = self.view[y0:y1, x0:x1].astype(np.float32)
        fh, fw = frame.shape[:2]
        crop = frame[int(box[1] * fh):int(round(box[3] * fh)),
                     int(box[0] * fw):int(round(box[2] * fw))]
        if crop.size == 0:
            return False
        grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
        cur = cv2.resize(grey, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
        cur = cur.astype(np.float32)
        if ref.std() < FLAT_STD or cur.std() < FLAT_STD:
            return bool(abs(float(ref.mean()) - float(cur.mean())) <= FLAT_DIFF)
        ncc = float(cv2.matchTemplate(cur, ref, cv2.TM_CCOEFF_NORMED)[0, 0])
        return ncc >= SAME_VIEW_NCC

    def is_background(self, frame: np.ndarray, d: Detection) -> bool:
        """True for a tracked detection that never moved and still shows the empty view."""
        if self.view is None or d.track_id is None or d.track_id in self._person:
            return False
        tid = d.track_id
        foot = foot_point(d.box)
        first = self._first.setdefault(tid, foot)
        if distance(first, foot) <= MOVED and self.matches_view(frame, d.box):
            return True
        self._person.add(tid)   # it moved, or is not what the empty scene had there
        self._first.pop(tid, None)
        if len(self._person) > 10_000:  # ids only grow: old ones never come back
            self._person.clear()
        return False

    def reset(self) -> None:
        """Tracker ids restart."""
        self._first.clear()
        self._person.clear()
