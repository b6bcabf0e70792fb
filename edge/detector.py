"""The detector seam: Detection, the Detector protocol and the Ultralytics backend."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edge.config import ModelConfig

log = logging.getLogger(__name__)

TRACK_FLOOR = 0.1  # detections down to this confidence feed the tracker's second stage


class DetectorError(RuntimeError):
    """A model that cannot be loaded or run."""


@dataclass(frozen=True)
class Detection:
    """One object in one frame; box is (x1, y1, x2, y2) normalised to 0..1."""

    track_id: int | None
    meaning: str
    cls_name: str
    conf: float
    box: tuple[float, float, float, float]


class Detector(Protocol):
    """Finds (and tracks) the objects named in the label map."""

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """Detections at or above the configured confidence, without track ids."""

    def track(self, frame: np.ndarray) -> list[Detection]:
        """Tracked detections (persisting across calls), down to the tracker's floor."""

    def reset(self) -> None:
        """Forget all tracks (a new video or a camera that reconnected)."""


def meaning_map(labels: dict[str, list[str]]) -> dict[str, str]:
    """Lower-cased model class name → meaning; the first meaning listing a name wins."""
    out: dict[str, str] = {}
    for meaning, names in labels.items():
        for name in names:
            out.setdefault(name.lower(), meaning)
    return out


class UltralyticsDetector:
    """Any model Ultralytics loads (.pt, ONNX, OpenVINO, NCNN) with ByteTrack/BoT-SORT."""

    def __init__(self, model_cfg: ModelConfig) -> None:
        """Load the model and work out which of its classes the label map asks for."""
        os.environ.setdefault("YOLO_OFFLINE", "1")
        self.cfg = model_cfg
        self._track_model = self._load()
        self._detect_model: Any = None
        names: dict[int, str] = dict(self._track_model.names)
        wanted = meaning_map(model_cfg.labels)
        self._meaning = {i: wanted[n.lower()] for i, n in names.items() if n.lower() in wanted}
        self._names = names
        if not self._meaning:
            raise DetectorError(
                f"model {model_cfg.path} has classes {sorted(names.values())}, none of which "
                f"the label map {model_cfg.labels} names")
        self._classes = sorted(self._meaning)
        log.info("model %s: classes %s", model_cfg.path,
                 {names[i]: m for i, m in self._meaning.items()})

    def _load(self) -> Any:
        """A fresh Ultralytics model object."""
        if not os.path.exists(self.cfg.path):
            raise DetectorError(f"model file not found: {self.cfg.path}")
        from ultralytics import YOLO  # type: ignore[attr-defined]
        try:
            return YOLO(self.cfg.path, task="detect")
        except Exception as exc:  # Ultralytics raises many types for a bad file
            raise DetectorError(f"cannot load model {self.cfg.path}: {exc}") from exc

    @property
    def class_names(self) -> dict[int, str]:
        """The model's own class names."""
        return dict(self._names)

    def _convert(self, result: Any, min_conf: float) -> list[Detection]:
        """Ultralytics Results → Detections in normalised coordinates."""
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return []
        xyxyn = boxes.xyxyn.cpu().numpy()
        confs = boxes.conf.cpu().numpy()
        clss = boxes.cls.cpu().numpy().astype(int)
        ids = boxes.id.cpu().numpy().astype(int) if boxes.id is not None else None
        out = []
        for k in range(len(clss)):
            c = int(clss[k])
            if c not in self._meaning or float(confs[k]) < min_conf:
                continue
            x1, y1, x2, y2 = (float(v) for v in np.clip(xyxyn[k], 0.0, 1.0))
            out.append(Detection(
                track_id=int(ids[k]) if ids is not None else None, meaning=self._meaning[c],
                cls_name=self._names[c], conf=float(confs[k]), box=(x1, y1, x2, y2)))
        return out

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """Detections at or above cfg.conf, without track ids."""
        if self._detect_model is None:
            self._detect_model = self._load()  # its own predictor: tracking state stays apart
        res = self._detect_model.predict(frame, imgsz=self.cfg.imgsz, conf=self.cfg.conf,
                                         classes=self._classes, verbose=False)
        return self._convert(res[0], self.cfg.conf)

    def track(self, frame: np.ndarray) -> list[Detection]:
        """Tracked detections; weak ones (>= TRACK_FLOOR) are kept so tracks survive dips."""
        floor = min(TRACK_FLOOR, self.cfg.conf)
        res = self._track_model.track(frame, persist=True, tracker=self.cfg.tracker,
                                      imgsz=self.cfg.imgsz, conf=floor,
                                      classes=self._classes, verbose=False)
        return [d for d in self._convert(res[0], floor) if d.track_id is not None]

    def reset(self) -> None:
        """Forget all tracks and restart track ids."""
        predictor = getattr(self._track_model, "predictor", None)
        for tracker in getattr(predictor, "trackers", None) or []:
            tracker.reset()


def load_detector(model_cfg: ModelConfig) -> Detector:
    """The detector for a node's model config."""
    return UltralyticsDetector(model_cfg)
