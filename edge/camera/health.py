"""Camera health: no frames, frozen, covered, too dark or moved view → camera_fault / camera_ok.

Covered (or smeared) and moved are judged against the scene's own baseline, learned in the
first seconds and kept current while the view is healthy, one per light profile (day, night:
by the scene's light, switched only after it has held for a minute with no fault open, so a
cover never becomes the night's baseline and dusk never looks like a cover); the enrolled view,
where there is one, is a second reference for moved. Absolute floors stay for what no baseline
can excuse: a frame too dark to see (DARK_LUMA) or with no detail at all (LOW_DETAIL).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from edge.config import NodeConfig
from protocol.payloads import Event, EventType, utc_now

log = logging.getLogger(__name__)

WORK_W = 320                 # frames are judged at this width
DARK_LUMA = 25.0             # mean luma (0..255) below this: too dark to see
LOW_DETAIL = 2.0             # mean |Laplacian| per unit of luma*100 below this: covered / smeared
FROZEN_DIFF = 0.15           # mean |difference| below this between frames: identical
MOVE_FRAC = 0.02             # view shifted by more than this share of the frame width
MOVE_DEG = 1.5               # or rotated by more than this many degrees
REASONS = ("no_frames", "frozen", "too_dark", "covered", "view_moved")
COVER_RATIO = 0.65           # detail below this share of the profile's baseline: covered/smeared
NIGHT_LUMA = 45.0            # scene light below this is the night profile ...
PROFILE_S = 60.0             # ... once it has held this long with no fault open
BASE_S = 5.0                 # a baseline is learned over this many seconds of healthy frames
BASE_TAU_S = 1800.0          # then follows the healthy view with this time constant
VIEW_REFRESH_S = 600.0       # the baseline view is renewed this often while unmoved


@dataclass
class Baseline:
    """One light profile's healthy view: mean luma, detail and the picture (WORK_W wide)."""

    luma: float
    detail: float
    view: np.ndarray
    since: float
    last: float
    view_t: float

    def ready(self, t: float) -> bool:
        """True once learned over BASE_S seconds."""
        return t - self.since >= BASE_S

    def follow(self, stats: FrameStats, t: float) -> None:
        """Fold in a healthy frame: a running mean while learning, then a slow average."""
        dt = max(0.0, t - self.last)
        a = dt / max(t - self.since, dt, 1e-6) if not self.ready(t) else min(1.0, dt / BASE_TAU_S)
        self.luma += a * (stats.luma - self.luma)
        self.detail += a * (stats.detail - self.detail)
        self.last = t


@dataclass(frozen=True)
class FrameStats:
    """What one frame says about the camera's sight."""

    luma: float
    detail: float
    small: np.ndarray


def frame_stats(frame: np.ndarray) -> FrameStats:
    """Mean luma and a brightness-normalised detail measure of a BGR or grey frame."""
    gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    h, w = gray.shape[:2]
    small = cv2.resize(gray, (WORK_W, max(1, round(h * WORK_W / w))), interpolation=cv2.INTER_AREA)
    luma = float(small.mean())
    lap = float(np.abs(cv2.Laplacian(small, cv2.CV_32F)).mean())
    return FrameStats(luma=luma, detail=100.0 * lap / max(luma, 1.0), small=small)


def blindness(stats: FrameStats) -> str | None:
    """too_dark or covered when a frame cannot show the pond, else None."""
    if stats.luma < DARK_LUMA:
        return "too_dark"
    if stats.detail < LOW_DETAIL:
        return "covered"
    return None


def view_shift(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float] | None:
    """(shift as a share of the width, rotation in degrees) of cur against ref; None if unsure."""
    orb = cv2.ORB_create(nfeatures=600)  # type: ignore[attr-defined]
    k1, d1 = orb.detectAndCompute(ref, None)
    k2, d2 = orb.detectAndCompute(cur, None)
    if d1 is None or d2 is None or len(k1) < 12 or len(k2) < 12:
        return None
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(d1, d2)
    if len(matches) < 12:
        return None
    src = np.array([k1[m.queryIdx].pt for m in matches], np.float32)
    dst = np.array([k2[m.trainIdx].pt for m in matches], np.float32)
    m, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                             ransacReprojThreshold=3.0)
    if m is None or inliers is None or int(inliers.sum()) < 10:
        return None
    h, w = ref.shape[:2]
    centre = np.array([w / 2, h / 2])
    moved = m[:, :2] @ centre + m[:, 2] - centre
    angle = float(np.degrees(np.arctan2(m[1, 0], m[0, 0])))
    return float(np.hypot(*moved) / w), angle


def load_view_reference(path: str | Path) -> np.ndarray | None:
    """The enrolled whole-frame reference (grey, WORK_W wide), or None when absent/unreadable."""
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        return None
    return frame_stats(img).small


class CameraHealth:
    """Judges every frame (or its absence) and raises one camera_fault per episode."""

    def __init__(self, cfg: NodeConfig, clock: Callable[[], float] = time.monotonic, *,
                 reference: np.ndarray | str | Path | None = None, fault_after_s: float = 3.0,
                 ok_after_s: float = 3.0, frozen_s: float = 10.0, view_every_s: float = 5.0
                 ) -> None:
        """Watch cfg's camera; reference is the enrolled view (image, path or None to skip)."""
        self.cfg = cfg
        self.clock = clock
        if isinstance(reference, str | Path):
            reference = load_view_reference(reference)
        elif reference is not None:
            reference = frame_stats(reference).small
        self.reference: np.ndarray | None = reference
        self.fault_after_s, self.ok_after_s = fault_after_s, ok_after_s
        self.frozen_s, self.view_every_s = frozen_s, view_every_s
        self.condition: str | None = None       # what the latest frame says, before debounce
        self.fault: str | None = None           # reason of the open camera_fault
        self._fault_id: str | None = None
        self._since: float | None = None         # when the current condition (or ok) began
        self._last_frame_t: float | None = None
        self._start_t: float | None = None
        self._prev: np.ndarray | None = None
        self._same_since: float | None = None
        self._next_view_t = 0.0
        self._moved = False
        self.last_shift: tuple[float, float] | None = None
        self.baselines: dict[str, Baseline] = {}
        self.profile: str | None = None
        self._profile_next: tuple[str, float] | None = None

    @property
    def vouching(self) -> bool:
        """False while a camera fault is open: the node cannot vouch for the pond."""
        return self.fault is None

    def state(self) -> str:
        """ok, or fault:<reason> for health reports."""
        return "ok" if self.fault is None else f"fault:{self.fault}"

    def check(self, frame: np.ndarray | None, t: float | None = None,
              wall: datetime | float | None = None) -> list[Event]:
        """Judge one frame (None: nothing arrived); return camera_fault / camera_ok events."""
        t = self.clock() if t is None else t
        if self._start_t is None:
            self._start_t = self._since = t
        cond = self._judge(frame, t)
        if cond != self.condition:
            self.condition, self._since = cond, t
        return self._debounce(t, wall_time(wall))

    def _judge(self, frame: np.ndarray | None, t: float) -> str | None:
        """The raw condition of this moment."""
        if frame is None:
            last = self._last_frame_t if self._last_frame_t is not None else self._start_t
            assert last is not None
            stalled = t - last >= self.cfg.camera.stall_s
            return "no_frames" if stalled else self.condition
        self._last_frame_t = t
        stats = frame_stats(frame)
        if self._prev is not None and self._prev.shape == stats.small.shape and float(
                cv2.absdiff(self._prev, stats.small).mean()) < FROZEN_DIFF:
            self._same_since = self._same_since if self._same_since is not None else t
        else:
            self._same_since = None
        self._prev = stats.small
        if self._same_since is not None and t - self._same_since >= self.frozen_s:
            return "frozen"
        profile = self._profile_of(stats.luma, t)
        base = self.baselines.get(profile)
        ready = base is not None and base.ready(t)
        blind = blindness(stats)
        if blind:
            return blind
        if base is not None and ready and stats.detail < COVER_RATIO * base.detail:
            return "covered"
        if t >= self._next_view_t:
            self._next_view_t = t + self.view_every_s
            self._moved = self._view_moved(stats.small, base if ready else None, t)
        if self._moved:
            return "view_moved"
        if base is None:
            self.baselines[profile] = Baseline(stats.luma, stats.detail, stats.small, t, t, t)
        else:
            base.follow(stats, t)
        return None

    def _profile_of(self, luma: float, t: float) -> str:
        """day or night by the scene's light; a change holds PROFILE_S with no fault first."""
        want = "night" if luma < NIGHT_LUMA else "day"
        if self.profile is None:
            self.profile = want
        if want == self.profile:
            self._profile_next = None
        elif self._profile_next is None or self._profile_next[0] != want:
            self._profile_next = (want, t)
        elif t - self._profile_next[1] >= PROFILE_S and self.fault is None \
                and self.condition is None:
            log.info("camera light profile %s → %s at %.0f s", self.profile, want, t)
            self.profile, self._profile_next = want, None
        return self.profile

    def _view_moved(self, small: np.ndarray, base: Baseline | None, t: float) -> bool:
        """Moved against the enrolled view (unsure counts as moved: the view is sharp but
        does not match) or, measured, against the profile's baseline view."""
        if self.reference is not None:
            shift = view_shift(self.reference, small)
            self.last_shift = shift
            if shift is None or shift[0] > MOVE_FRAC or abs(shift[1]) > MOVE_DEG:
                return True
        if base is None:
            return False
        own = view_shift(base.view, small)
        if self.reference is None:
            self.last_shift = own
        if own is not None and (own[0] > MOVE_FRAC or abs(own[1]) > MOVE_DEG):
            return True
        if own is not None and own[0] < MOVE_FRAC / 4 and t - base.view_t >= VIEW_REFRESH_S \
                and self.fault is None:
            base.view, base.view_t = small, t     # kept current while it has not moved
        return False

    def _debounce(self, t: float, wall: datetime) -> list[Event]:
        """Open a fault after fault_after_s of one condition; close it after ok_after_s of none."""
        assert self._since is not None
        held = t - self._since
        cfg = self.cfg
        if self.fault is None and self.condition is not None:
            wait = 0.0 if self.condition == "no_frames" else self.fault_after_s
            if held >= wait:
                self.fault = self.condition
                ev = Event.make(EventType.CAMERA_FAULT, cfg.node_id, cfg.pond_id, ts=wall,
                                reason=self.condition)
                self._fault_id = ev.id
                log.warning("camera fault: %s", self.condition)
                return [ev]
        elif self.fault is not None and self.condition is None and held >= self.ok_after_s:
            log.info("camera recovered from %s", self.fault)
            ev = Event.make(EventType.CAMERA_OK, cfg.node_id, cfg.pond_id, ts=wall,
                            reason=f"recovered from {self.fault}", ref=self._fault_id)
            self.fault, self._fault_id = None, None
            return [ev]
        elif self.fault is not None and self.condition is not None:
            self.fault = self.condition   # the reason shown follows what is wrong now
        return []


def wall_time(wall: datetime | float | None) -> datetime:
    """A timezone-aware UTC datetime from a datetime, an epoch float or None (now)."""
    if wall is None:
        return utc_now()
    if isinstance(wall, int | float):
        return datetime.fromtimestamp(float(wall), UTC)
    return wall


def view_reference_meta(path: str | Path) -> dict[str, object]:
    """The JSON sidecar of an enrolled view reference ({} when absent)."""
    side = Path(path).with_suffix(".json")
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
