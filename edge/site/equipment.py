"""Kit checks: the rescue kit against its enrolled references; equipment_missing / _restored."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.camera.health import blindness, frame_stats, wall_time
from edge.config import Equipment, NodeConfig
from protocol.payloads import Event, EventType

log = logging.getLogger(__name__)

SEARCH_MARGIN = 0.5      # search this share of the ROI size around it (a slightly moved camera)
OCCLUDED_SHARE = 0.05    # a person box covering this share of the ROI blocks the check
RING_MIN_PX = 40         # the reference needs this many ring-coloured pixels for the colour test
RING_PRESENT = 0.35      # share of the reference's ring pixels that must still be seen
NCC_WITH_COLOUR = 0.30   # structure agreement needed alongside the colour
NCC_ALONE = 0.60         # structure agreement that alone says "present" (plain items)
NCC_STRONG = 0.80        # structure agreement that says "present" even without the colour
CHECKS_PER_WINDOW = 3    # an item is checked at least this often within missing_after_s


def check_interval(spec: Equipment) -> float:
    """Seconds between checks: check_every_s, shortened so that an item is checked at least
    CHECKS_PER_WINDOW times within missing_after_s (0: missing on the first absent check)."""
    if spec.missing_after_s <= 0:
        return spec.check_every_s
    return min(spec.check_every_s, spec.missing_after_s / CHECKS_PER_WINDOW)


def ring_mask(bgr: np.ndarray) -> np.ndarray:
    """Pixels in the orange/red of a lifebuoy (hue wraps around red), as a 0/255 mask."""
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    lo = cv2.inRange(hsv, (0, 180, 60), (20, 255, 255))      # saturated: not brown wood or skin
    hi = cv2.inRange(hsv, (165, 180, 60), (180, 255, 255))
    return cv2.bitwise_or(lo, hi)


def roi_px(roi: Sequence[float], w: int, h: int, margin: float = 0.0) -> tuple[int, int, int, int]:
    """Pixel box x0, y0, x1, y1 of a normalised x, y, w, h ROI grown by margin of its size."""
    x, y, bw, bh = roi
    x0, y0 = (x - margin * bw) * w, (y - margin * bh) * h
    x1, y1 = (x + bw + margin * bw) * w, (y + bh + margin * bh) * h
    return (max(0, int(x0)), max(0, int(y0)), min(w, int(round(x1))), min(h, int(round(y1))))


def _gray(bgr: np.ndarray) -> np.ndarray:
    """Slightly blurred grey, so noise and tiny shifts matter less."""
    return cv2.GaussianBlur(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), (3, 3), 0)


def _box_of(p: Any) -> tuple[float, float, float, float]:
    """A normalised (x1, y1, x2, y2) from a Detection-like object or a 4-sequence."""
    box = getattr(p, "box", p)
    x1, y1, x2, y2 = (float(v) for v in box)
    return x1, y1, x2, y2


@dataclass
class ItemState:
    """What the watch knows about one item."""

    spec: Equipment
    ref: np.ndarray | None = None
    ring_px: int = 0
    state: str = "unknown:not_checked"
    absent_since: float | None = None
    open_missing: str | None = None
    next_check: float | None = None
    last_scores: dict[str, float] = field(default_factory=dict)


class EquipmentWatch:
    """Checks each item at check_interval (at least three times per missing_after_s) and
    debounces absence."""

    def __init__(self, cfg: NodeConfig, clock: Callable[[], float] = time.monotonic, *,
                 config_path: str | Path | None = None) -> None:
        """Load the enrolled reference of every item of cfg.equipment."""
        self.cfg = cfg
        self.clock = clock
        self.items: dict[str, ItemState] = {}
        for spec in cfg.equipment:
            st = ItemState(spec=spec)
            path = reference_path(spec, config_path)
            img = cv2.imread(str(path)) if path is not None else None
            if img is None:
                log.warning("equipment %s: no reference at %s; run pondwatch-edge enrol",
                            spec.item, path)
                st.state = "unknown:no_reference"
            else:
                st.ref = img
                st.ring_px = int(np.count_nonzero(ring_mask(img)))
            self.items[spec.item] = st
            if check_interval(spec) < spec.check_every_s:
                log.info("equipment %s: checked every %.2f s (check_every_s %g s would check it "
                         "fewer than %d times within missing_after_s %g s)", spec.item,
                         check_interval(spec), spec.check_every_s, CHECKS_PER_WINDOW,
                         spec.missing_after_s)

    def state(self) -> dict[str, str]:
        """item → present, missing, or unknown:<reason> (for the health heartbeat)."""
        return {name: st.state for name, st in self.items.items()}

    def check(self, frame: np.ndarray, t: float | None = None,
              wall: datetime | float | None = None, persons: Iterable[Any] = (), *,
              vouching: bool = True) -> list[Event]:
        """Check the items that are due; persons are Detection-like boxes (normalised x1y1x2y2).

        A detection whose `meaning` equals an item name counts as a sighting of that item, not
        as an occluding person. vouching=False (camera fault) skips the checks.
        """
        t = self.clock() if t is None else t
        ts = wall_time(wall)
        plist = list(persons)
        blind: str | None = None
        events: list[Event] = []
        for name, st in self.items.items():
            if st.ref is None or (st.next_check is not None and t < st.next_check):
                continue
            st.next_check = t + check_interval(st.spec)
            if blind is None:
                blind = "" if vouching else "camera_fault"
                blind = blind or blindness(frame_stats(frame)) or ""
            if blind:
                st.state = f"unknown:{blind}"
                continue
            verdict = self._judge(st, frame, plist)
            events.extend(self._update(name, st, verdict, t, ts))
        return events

    def _judge(self, st: ItemState, frame: np.ndarray, persons: list[Any]) -> str:
        """present, absent, or unknown:<reason> for one item in one frame."""
        assert st.ref is not None
        h, w = frame.shape[:2]
        x0, y0, x1, y1 = roi_px(st.spec.roi, w, h)
        area = max(1, (x1 - x0) * (y1 - y0))
        for p in persons:
            bx1, by1, bx2, by2 = _box_of(p)
            ix = max(0.0, min(bx2 * w, x1) - max(bx1 * w, x0))
            iy = max(0.0, min(by2 * h, y1) - max(by1 * h, y0))
            if getattr(p, "meaning", None) == st.spec.item and ix * iy > 0:
                st.last_scores = {"sighting": 1.0}
                return "present"
            if getattr(p, "meaning", "person") != st.spec.item and ix * iy / area >= OCCLUDED_SHARE:
                return "unknown:occluded"
        sx0, sy0, sx1, sy1 = roi_px(st.spec.roi, w, h, SEARCH_MARGIN)
        area_img = frame[sy0:sy1, sx0:sx1]
        ref, ring_px = st.ref, st.ring_px
        if ref.shape[:2] != (y1 - y0, x1 - x0):       # enrolled at another resolution
            ref = cv2.resize(ref, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
            ring_px = int(np.count_nonzero(ring_mask(ref)))
        ncc = float(cv2.minMaxLoc(cv2.matchTemplate(_gray(area_img), _gray(ref),
                                                    cv2.TM_CCOEFF_NORMED))[1])
        scores = {"ncc": round(ncc, 3)}
        if st.ring_px >= RING_MIN_PX and ring_px > 0:     # a ring-coloured item
            ring = float(np.count_nonzero(ring_mask(area_img))) / ring_px
            scores["ring"] = round(ring, 3)
            st.last_scores = scores
            present = (ring >= RING_PRESENT and ncc >= NCC_WITH_COLOUR) or ncc >= NCC_STRONG
        else:
            st.last_scores = scores
            present = ncc >= NCC_ALONE
        return "present" if present else "absent"

    def _update(self, name: str, st: ItemState, verdict: str, t: float,
                ts: datetime) -> list[Event]:
        """Advance the item's absence timer and emit missing / restored once each."""
        cfg = self.cfg
        if verdict.startswith("unknown"):
            st.state = verdict          # the absence timer neither advances nor resets
            return []
        if verdict == "present":
            st.absent_since = None
            st.state = "present"
            if st.open_missing:
                ref, st.open_missing = st.open_missing, None
                log.info("equipment %s restored", name)
                return [Event.make(EventType.EQUIPMENT_RESTORED, cfg.node_id, cfg.pond_id,
                                   ts=ts, item=name, ref=ref)]
            return []
        if st.absent_since is None:
            st.absent_since = t
        gone = t - st.absent_since
        if st.open_missing:
            st.state = "missing"
        elif gone >= st.spec.missing_after_s:
            st.state = "missing"
            ev = Event.make(EventType.EQUIPMENT_MISSING, cfg.node_id, cfg.pond_id, ts=ts,
                            item=name, reason=f"not seen for {gone:.0f} s")
            st.open_missing = ev.id
            log.warning("equipment %s missing for %.0f s", name, gone)
            return [ev]
        else:
            st.state = "unknown:confirming_absence"
        return []


# ---------------------------------------------------------------- references
def reference_path(spec: Equipment, config_path: str | Path | None) -> Path | None:
    """Where an item's reference lives: its `reference`, else refs/<item>.png by the config."""
    if spec.reference:
        return Path(spec.reference)
    if config_path is None:
        return None
    return Path(config_path).resolve().parent / "refs" / f"{spec.item}.png"


def view_reference_path(cfg: NodeConfig, config_path: str | Path | None) -> Path | None:
    """The whole-frame reference (for view_moved): view.png beside the first item reference."""
    for spec in cfg.equipment:
        p = reference_path(spec, config_path)
        if p is not None:
            return p.parent / "view.png"
    return None if config_path is None else Path(config_path).resolve().parent / "refs/view.png"
