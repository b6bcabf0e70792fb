"""Site watch: camera health and the rescue kit, judged on the frames the detector sees."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge.camera.health import CameraHealth
from edge.config import NodeConfig
from edge.site.equipment import EquipmentWatch, view_reference_path
from protocol import Event


class SiteWatch:
    """Raises camera_fault/camera_ok and equipment_missing/equipment_restored events."""

    def __init__(self, cfg: NodeConfig, config_path: str | Path | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Load the enrolled whole-view and item references written by `enrol`."""
        view = view_reference_path(cfg, config_path)
        self.camera = CameraHealth(cfg, clock,
                                   reference=view if view is not None and view.exists() else None)
        self.kit = EquipmentWatch(cfg, clock, config_path=config_path)

    def check(self, frame: np.ndarray | None, t: float, wall: datetime,
              detections: Sequence[Any] = ()) -> list[Event]:
        """Judge one frame (None: no frame arrived in time) with the detector's boxes."""
        events = self.camera.check(frame, t, wall)
        if frame is not None:
            events += self.kit.check(frame, t, wall, detections, vouching=self.camera.vouching)
        return events

    @property
    def vouching(self) -> bool:
        """False while the camera is faulty: the node cannot vouch for the pond."""
        return self.camera.vouching

    def state(self) -> dict[str, Any]:
        """Camera and per-item state for the heartbeat."""
        return {"camera": self.camera.state(), "equipment": self.kit.state()}
