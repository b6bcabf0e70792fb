"""The Ultralytics detector backend behind the Detector seam, and load_detector choosing the
run time (edge.vision.exported runs ONNX and NCNN exports without torch)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge.config import ModelConfig, runtime_for
from edge.trust import ModelTrustError, check_model
from edge.vision.offline import ultralytics_offline
from edge.vision.tracking import new_tracker, track_update
from edge.vision.types import (
    TRACK_FLOOR,
    Candidate,
    Detection,
    Detector,
    DetectorError,
    labelled,
    meaning_map,
)

log = logging.getLogger(__name__)

__all__ = ["DetectorError", "UltralyticsDetector", "load_detector", "meaning_map"]


class UltralyticsDetector:
    """Any model Ultralytics loads (.pt, ONNX, OpenVINO, NCNN), tracked by ByteTrack/BoT-SORT."""

    def __init__(self, model_cfg: ModelConfig) -> None:
        """Load the model and work out which of its classes the label map asks for."""
        ultralytics_offline()
        self.cfg = model_cfg
        self._model = self._load()
        names: dict[int, str] = dict(self._model.names)
        wanted = meaning_map(model_cfg.labels)
        self._meaning = {i: wanted[n.lower()] for i, n in names.items() if n.lower() in wanted}
        self._names = names
        if not self._meaning:
            raise DetectorError(
                f"model {model_cfg.path} has classes {sorted(names.values())}, none of which "
                f"the label map {model_cfg.labels} names")
        self._classes = sorted(self._meaning)
        self._tracker = new_tracker(model_cfg.tracker)
        log.info("model %s: classes %s; tracker %s", model_cfg.path,
                 {names[i]: m for i, m in self._meaning.items()}, model_cfg.tracker)

    def _load(self) -> Any:
        """A fresh Ultralytics model object, once edge.trust has accepted the file (a .pt is a
        pickle: an untrusted one must never reach torch)."""
        if not os.path.exists(self.cfg.path):
            raise DetectorError(f"model file not found: {self.cfg.path}")
        try:
            verdict = check_model(self.cfg.path, self.cfg)
        except ModelTrustError as exc:
            raise DetectorError(str(exc)) from exc
        log.info("model %s: %s (%s)", self.cfg.path, verdict.how,
                 verdict.key_id or verdict.name or verdict.sha256[:12])
        from ultralytics import YOLO  # type: ignore[attr-defined]
        try:
            return YOLO(self.cfg.path, task="detect")
        except Exception as exc:  # Ultralytics raises many types for a bad file
            raise DetectorError(f"cannot load model {self.cfg.path}: {exc}") from exc

    @property
    def class_names(self) -> dict[int, str]:
        """The model's own class names."""
        return dict(self._names)

    @property
    def classes(self) -> list[int]:
        """Indices of the classes the label map names (the predict class filter)."""
        return list(self._classes)

    def predict(self, crops: Sequence[np.ndarray], imgsz: int, floor: float
                ) -> list[list[Candidate]]:
        """Candidates (pixel boxes in each crop) of the label map's classes, >= floor."""
        if not crops:
            return []
        res = self._model.predict(list(crops), imgsz=imgsz, conf=floor, classes=self._classes,
                                  verbose=False)
        out: list[list[Candidate]] = []
        for r in res:
            boxes = r.boxes
            if boxes is None or len(boxes) == 0:
                out.append([])
                continue
            xyxy = boxes.xyxy.cpu().numpy()
            confs = boxes.conf.cpu().numpy()
            clss = boxes.cls.cpu().numpy().astype(int)
            out.append([Candidate((float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                                  float(c), int(k))
                        for b, c, k in zip(xyxy, confs, clss, strict=True)
                        if int(k) in self._meaning])
        return out

    def label(self, c: Candidate, w: int, h: int) -> Detection:
        """A frame-pixel candidate as a Detection with its meaning, normalised to 0..1."""
        return labelled(c, w, h, self._meaning[c.cls], self._names[c.cls])

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """Whole-frame detections at or above cfg.conf, without track ids."""
        h, w = frame.shape[:2]
        return [self.label(c, w, h) for c in self.predict([frame], self.cfg.imgsz,
                                                         self.cfg.conf)[0]]

    def track(self, frame: np.ndarray, detections: Sequence[Detection] | None = None
              ) -> list[Detection]:
        """Feed one frame's detections (default: whole-frame ones >= TRACK_FLOOR) to the
        tracker; returns those that belong to a track, with its id."""
        if detections is None:
            h, w = frame.shape[:2]
            floor = min(TRACK_FLOOR, self.cfg.conf)
            detections = [self.label(c, w, h)
                          for c in self.predict([frame], self.cfg.imgsz, floor)[0]]
        return track_update(self._tracker, frame, detections)

    def reset(self) -> None:
        """Forget all tracks and restart track ids."""
        self._tracker.reset()


def load_detector(model_cfg: ModelConfig) -> Detector:
    """The detector for a node's model config, on its run time (model.runtime, else the one
    its file needs): onnxruntime and ncnn never import torch or Ultralytics."""
    runtime = model_cfg.runtime or runtime_for(model_cfg.path)
    if runtime == "ultralytics":
        return UltralyticsDetector(model_cfg)
    from edge.vision.exported import ExportedDetector
    return ExportedDetector(model_cfg, runtime)
