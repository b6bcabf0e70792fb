"""ByteTrack without torch: the `trackers` package's ByteTrackTracker, set from a tracker YAML.

The onnxruntime and ncnn run times track with this; the Ultralytics one keeps Ultralytics' own
(edge.vision.tracking). Both read the same YAML (edge/vision/trackers/pondwatch.yaml), mapped:
track_high_thresh → high_conf_det_threshold, new_track_thresh → track_activation_threshold,
track_low_thresh drops weaker boxes, track_buffer → lost_track_buffer (frames at 30 fps, as
Ultralytics counts them), match_thresh (a cost, 1 - IoU) → minimum_iou_threshold = 1 - it.
Neither fuses the score into the IoU (fuse_score must be off).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import yaml

from edge.vision.tracking import TrackerError, tracker_path
from edge.vision.types import Detection

CONFIRM_FRAMES = 2   # a new track is confirmed on its second matched frame, as Ultralytics
                     # does after its first frame; ids count from 1 as Ultralytics' do


class ByteTrack:
    """One ByteTrack instance fed the node's Detections; returns those on a confirmed track."""

    def __init__(self, name: str) -> None:
        """A tracker set from the YAML `name` (a path or one of edge/vision/trackers/)."""
        path = tracker_path(name, ultralytics=False)
        with path.open(encoding="utf-8") as f:
            args: dict[str, Any] = yaml.safe_load(f) or {}
        if args.get("tracker_type") != "bytetrack":
            raise TrackerError(f"{path}: the onnxruntime and ncnn run times track with "
                               f"bytetrack only, got {args.get('tracker_type')!r}")
        if args.get("fuse_score", False):
            raise TrackerError(f"{path}: fuse_score must be off for the onnxruntime and ncnn "
                               "run times")
        try:
            self.low = float(args["track_low_thresh"])
            self._kw: dict[str, Any] = {
                "lost_track_buffer": int(args["track_buffer"]), "frame_rate": 30.0,
                "track_activation_threshold": float(args["new_track_thresh"]),
                "high_conf_det_threshold": float(args["track_high_thresh"]),
                "minimum_iou_threshold": 1.0 - float(args["match_thresh"]),
                "minimum_consecutive_frames": CONFIRM_FRAMES}
        except (KeyError, TypeError, ValueError) as exc:
            raise TrackerError(f"{path}: {exc!r} missing or not a number") from exc
        self.reset()

    def reset(self) -> None:
        """Forget all tracks and restart track ids."""
        from trackers import ByteTrackTracker
        self._tracker = ByteTrackTracker(**self._kw)

    def update(self, frame: np.ndarray, detections: Sequence[Detection]) -> list[Detection]:
        """One tracker step: the detections (>= track_low_thresh) on a confirmed track, with
        its id; boxes and scores stay the detector's own."""
        import supervision as sv
        h, w = frame.shape[:2]
        dets = [d for d in detections if d.conf >= self.low]
        xyxy = np.array([d.box for d in dets], np.float32).reshape(-1, 4) * [w, h, w, h]
        found = self._tracker.update(sv.Detections(
            xyxy=xyxy, confidence=np.array([d.conf for d in dets], np.float32),
            data={"i": np.arange(len(dets))}))
        ids: Any = found.tracker_id if found.tracker_id is not None else []
        return [replace(dets[int(i)], track_id=int(t) + 1)
                for i, t in zip(found.data.get("i", []), ids, strict=True) if t >= 0]
