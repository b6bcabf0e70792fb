"""Multi-object tracking of the node's own detections with Ultralytics' ByteTrack/BoT-SORT."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import EdgeError
from edge.vision.types import Detection

log = logging.getLogger(__name__)

TRACKERS_DIR = Path(__file__).resolve().parent / "trackers"
DEFAULT_TRACKER = "pondwatch.yaml"


class TrackerError(EdgeError, ValueError):
    """A tracker configuration that cannot be found or used."""


def tracker_path(name: str, ultralytics: bool = True) -> Path:
    """The tracker YAML: a path, one of edge/vision/trackers/, or (ultralytics) one Ultralytics
    ships."""
    p = Path(name)
    if p.is_file():
        return p
    if (TRACKERS_DIR / name).is_file():
        return TRACKERS_DIR / name
    if not ultralytics:
        raise TrackerError(f"tracker config not found: {name} (looked in {TRACKERS_DIR}; the "
                           "onnxruntime and ncnn run times do not read Ultralytics' own)")
    from ultralytics.utils import ROOT as U_ROOT
    if (U_ROOT / "cfg" / "trackers" / name).is_file():
        return U_ROOT / "cfg" / "trackers" / name
    raise TrackerError(f"tracker config not found: {name} (looked in {TRACKERS_DIR} and "
                       "Ultralytics' cfg/trackers)")


def new_tracker(name: str) -> Any:
    """A fresh ByteTrack or BoT-SORT (without ReID) instance from a tracker YAML."""
    from ultralytics.trackers.bot_sort import BOTSORT
    from ultralytics.trackers.byte_tracker import BYTETracker
    from ultralytics.utils import YAML, IterableSimpleNamespace
    path = tracker_path(name)
    args = IterableSimpleNamespace(**YAML.load(str(path)))  # type: ignore[no-untyped-call]
    kinds: dict[str, Any] = {"bytetrack": BYTETracker, "botsort": BOTSORT}
    kind = getattr(args, "tracker_type", None)
    if kind not in kinds:
        raise TrackerError(f"{path}: tracker_type must be bytetrack or botsort, got {kind!r}")
    if kind == "botsort" and getattr(args, "with_reid", False):
        raise TrackerError(f"{path}: with_reid needs a ReID model; PondWatch runs without one")
    return kinds[kind](args=args)


def track_update(tracker: Any, frame: np.ndarray, detections: Sequence[Detection]
                 ) -> list[Detection]:
    """One tracker step; returns the detections that belong to an active track, with its id.

    Boxes and scores are the detector's own (not the Kalman prediction), so stature and
    foot points are measured on what the model saw.
    """
    from ultralytics.engine.results import Boxes
    h, w = frame.shape[:2]
    dets = list(detections)
    kinds = {m: k for k, m in enumerate(sorted({d.meaning for d in dets}))}
    data = np.zeros((len(dets), 6), np.float32)
    for i, d in enumerate(dets):
        x1, y1, x2, y2 = d.box
        data[i] = (x1 * w, y1 * h, x2 * w, y2 * h, d.conf, kinds[d.meaning])
    tracks = tracker.update(Boxes(data, (h, w)), frame)
    out = []
    for row in tracks if len(tracks) else []:
        idx = int(row[-1])
        if 0 <= idx < len(dets):
            out.append(replace(dets[idx], track_id=int(row[4])))
    return out
