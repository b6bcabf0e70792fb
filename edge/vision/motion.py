"""Idle mode: cheap frame differencing decides when the detector may run at a low rate."""

from __future__ import annotations

import logging

import cv2
import numpy as np

log = logging.getLogger(__name__)

WIDTH = 160          # frames are compared at this width
PIXEL_DELTA = 18     # grey-level change that counts a pixel as changed
CHANGED_SHARE = 0.002  # share of changed pixels that counts as motion
QUIET_S = 3.0        # seconds without motion before going idle


class MotionGate:
    """Says for each frame whether the detector should run: always while things move or
    people are about, at idle_fps once the scene has been still for QUIET_S seconds."""

    def __init__(self, full_fps: float, idle_fps: float, quiet_s: float = QUIET_S) -> None:
        """A gate that starts awake."""
        self.full_fps, self.idle_fps, self.quiet_s = full_fps, idle_fps, quiet_s
        self._bg: np.ndarray | None = None
        self._last_motion_t: float | None = None
        self._last_run_t: float | None = None
        self._woken = False
        self.idle = False
        self.last_share = 0.0

    def wake(self) -> None:
        """Return to full rate at once (PIR, a button, a command)."""
        self._woken = True

    def _moved(self, frame: np.ndarray) -> bool:
        """Compare a small blurred grey copy with a running background."""
        h, w = frame.shape[:2]
        small = cv2.resize(frame, (WIDTH, max(1, h * WIDTH // max(1, w))),
                           interpolation=cv2.INTER_AREA)
        grey = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0)
        g = grey.astype(np.float32)
        if self._bg is None or self._bg.shape != g.shape:
            self._bg = g
            return True
        diff = cv2.absdiff(g, self._bg)
        cv2.accumulateWeighted(g, self._bg, 0.3)
        self.last_share = float(np.count_nonzero(diff > PIXEL_DELTA)) / diff.size
        return self.last_share >= CHANGED_SHARE

    def should_detect(self, frame: np.ndarray, t: float, busy: bool = False) -> bool:
        """True when the detector should run on this frame; busy keeps it at full rate."""
        moved = self._moved(frame)
        if moved or busy or self._woken or self._last_motion_t is None:
            self._last_motion_t = t
            self._woken = False
        was_idle = self.idle
        self.idle = t - self._last_motion_t >= self.quiet_s
        if self.idle != was_idle:
            log.info("detector %s at %.1f s", "idle" if self.idle else "awake", t)
        if not self.idle:
            self._last_run_t = t
            return True
        if self._last_run_t is None or t - self._last_run_t >= 1.0 / self.idle_fps - 1e-6:
            self._last_run_t = t
            return True
        return False
