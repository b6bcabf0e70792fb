"""Still things: a 'person' that stays put and unchanged for minutes is learned as background.

A post, a scarecrow or a drying net that the model reads as a person keeps the motion gate
awake all summer if every person detection in a zone counts as someone there. Without any
enrolment, the node remembers each person-like box in a zone with a small grey copy of what is
under it; a box at the same place (IoU >= SAME_PLACE) showing the same picture (normalised
correlation >= SAME_LOOK) for `learn_s` seconds is learned. It stops counting (for the gate and
for the rules) as long as it stays exactly that: a child standing in front of it, or walking
into its place, changes both the box and the picture, and a learned thing that changes is
forgotten at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.vision.windows import iou_and_inside

Box = tuple[float, float, float, float]

SAME_PLACE = 0.7   # IoU of two boxes of one still thing
SAME_LOOK = 0.85   # normalised correlation of its picture then and now
FLAT_STD = 4.0     # a picture with less contrast is compared by brightness ...
FLAT_DIFF = 10.0   # ... within this many grey levels
PATCH = (16, 32)   # the picture is compared at this size (w, h)
GONE_S = 30.0      # not seen for this long: forgotten
MAX_THINGS = 32    # at most this many remembered places


@dataclass
class _Thing:
    """One remembered place: its box, picture, since when unchanged, when last seen."""

    box: Box
    patch: np.ndarray
    since: float
    seen: float


def patch_of(frame: np.ndarray, box: Box) -> np.ndarray | None:
    """The grey picture under a normalised box at PATCH size (None when empty)."""
    h, w = frame.shape[:2]
    crop = frame[int(box[1] * h):max(int(box[1] * h) + 1, int(round(box[3] * h))),
                 int(box[0] * w):max(int(box[0] * w) + 1, int(round(box[2] * w)))]
    if crop.size == 0:
        return None
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    return cv2.resize(grey, PATCH, interpolation=cv2.INTER_AREA).astype(np.float32)


def same_look(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two patches show the same thing (structure, or brightness when flat)."""
    if a.std() < FLAT_STD or b.std() < FLAT_STD:
        return bool(abs(float(a.mean()) - float(b.mean())) <= FLAT_DIFF)
    return float(cv2.matchTemplate(a, b, cv2.TM_CCOEFF_NORMED)[0, 0]) >= SAME_LOOK


class StillThings:
    """Learns person-like boxes that neither move nor change for learn_s seconds."""

    def __init__(self, learn_s: float) -> None:
        """learn_s: how long unchanged before learned (0: never learn)."""
        self.learn_s = learn_s
        self._things: list[_Thing] = []

    def _find(self, box: Box) -> _Thing | None:
        """The remembered thing at this place, if any."""
        best = max(self._things, key=lambda th: iou_and_inside(box, th.box)[0], default=None)
        return best if best is not None and iou_and_inside(box, best.box)[0] >= SAME_PLACE \
            else None

    def observe(self, frame: np.ndarray, boxes: list[Box], t: float) -> None:
        """Remember these boxes (person detections in a zone) seen at pipeline time t."""
        if self.learn_s <= 0:
            return
        for box in boxes:
            patch = patch_of(frame, box)
            if patch is None:
                continue
            th = self._find(box)
            if th is None:
                self._things.append(_Thing(box, patch, t, t))
            elif same_look(th.patch, patch):
                th.seen = t
            else:                          # the same place shows something else now
                th.box, th.patch, th.since, th.seen = box, patch, t, t
        self._things = sorted((th for th in self._things if t - th.seen <= GONE_S),
                              key=lambda th: -th.seen)[:MAX_THINGS]

    def learned(self, frame: np.ndarray, box: Box, t: float) -> bool:
        """True when box is a learned still thing that still looks as it did."""
        if self.learn_s <= 0:
            return False
        th = self._find(box)
        if th is None or t - th.since < self.learn_s:
            return False
        patch = patch_of(frame, box)
        return patch is not None and same_look(th.patch, patch)

    def reset(self) -> None:
        """Forget everything (a new video or a camera that moved)."""
        self._things.clear()
