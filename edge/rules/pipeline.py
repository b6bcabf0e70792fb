"""The node's vision pipeline: frame → (idle gate) → tracker → rules → events with snapshots."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from edge.config import NodeConfig
from edge.rules.engine import PERSON_MEANINGS, IdFactory, RuleEngine, random_ids
from edge.vision.background import Background
from edge.vision.geometry import foot_point, stature_model, zone_of
from edge.vision.motion import MotionGate
from edge.vision.snapshot import Mark, encode_jpeg, snapshot
from edge.vision.still import StillThings
from edge.vision.types import Detection, Detector
from edge.vision.windows import detect_people
from protocol.payloads import Event, EventType, Severity

log = logging.getLogger(__name__)

NO_SNAPSHOT = frozenset({EventType.EVENT_END})


@dataclass(frozen=True)
class Emission:
    """An event and its annotated JPEG (None when it has none)."""

    event: Event
    snapshot: bytes | None
    frame: bytes | None = None  # critical events: the unannotated frame (learning loop)


@dataclass
class PipelineStats:
    """Counters reported in health."""

    frames: int = 0
    detected_frames: int = 0
    last_inference_ms: float = 0.0
    fps: float = 0.0
    idle: bool = False
    _window: list[float] = field(default_factory=list, repr=False)

    def tick(self, t: float) -> None:
        """Count a processed frame at pipeline time t and refresh the rate."""
        self.frames += 1
        self._window.append(t)
        del self._window[:-20]
        span = self._window[-1] - self._window[0]
        self.fps = (len(self._window) - 1) / span if span > 0 else 0.0


KIT_LOOKALIKE_MAX_M = 0.75  # smaller than a toddler who walks: a kit item, if it never moved
PRESENCE_CONF = 0.2  # a detection this sure in a zone keeps the detector awake, tracked or not


class Pipeline:
    """Everything between a frame and the events it causes."""

    def __init__(self, cfg: NodeConfig, detector: Detector, *, ids: IdFactory = random_ids,
                 idle: bool = True, snapshots: bool = True,
                 empty_view: np.ndarray | None = None) -> None:
        """A pipeline for one node; ids makes event ids, idle enables the motion gate,
        empty_view (the enrolled view, grey) tells background things from people."""
        self.cfg = cfg
        self.detector = detector
        self.stature = stature_model(cfg)
        self.rules = RuleEngine(cfg, self.stature, ids)
        self.gate = MotionGate(cfg.camera.fps, cfg.rules.idle_fps) if idle else None
        self.snapshots = snapshots
        self.stats = PipelineStats()
        self.last_detections: list[Detection] = []
        self.someone_in_zone = False
        self.background = Background(empty_view)
        self.still = StillThings(cfg.rules.still_learn_s)
        self._kit_born: dict[int, str] = {}
        self._left_kit: set[int] = set()

    def wake(self) -> None:
        """Leave idle mode at once (PIR)."""
        if self.gate is not None:
            self.gate.wake()

    def process(self, frame: np.ndarray, t: float, wall: datetime) -> list[Emission]:
        """Run one frame through the pipeline; t is the pipeline clock, wall stamps events."""
        self.stats.tick(t)
        busy = self.someone_in_zone or self.rules.in_water()
        run = self.gate is None or self.gate.should_detect(frame, t, busy=busy)
        self.stats.idle = bool(self.gate and self.gate.idle)
        if not run:
            events = self.rules.tick(t, wall)
        else:
            start = time.perf_counter()
            found = self.unlearned(detect_people(self.cfg, self.detector, frame), frame, t)
            self.someone_in_zone = self.anyone_in_zone(found, frame)
            dets = [self.kit_lookalike(d) for d in self.detector.track(frame, found)
                    if not self.background.is_background(frame, d)]
            self.stats.last_inference_ms = (time.perf_counter() - start) * 1000.0
            self.stats.detected_frames += 1
            self.last_detections = dets
            events = self.rules.update(t, wall, dets)
        return [self._emit(ev, frame) for ev in events]

    def unlearned(self, found: list[Detection], frame: np.ndarray, t: float
                  ) -> list[Detection]:
        """The detections less those learned as still things (edge.vision.still), after
        showing it this frame's person detections in a zone."""
        self.still.observe(frame, [d.box for d in found if self._present(d)], t)
        return [d for d in found if not self.still.learned(frame, d.box, t)]

    def _present(self, d: Detection) -> bool:
        """A person detection sure enough, with its foot in a zone."""
        return (d.meaning in PERSON_MEANINGS and d.conf >= PRESENCE_CONF
                and zone_of(foot_point(d.box), self.cfg) is not None)

    def anyone_in_zone(self, found: list[Detection], frame: np.ndarray) -> bool:
        """True when any person detection (confirmed or not, tracked or not) is in a zone,
        other than one showing the enrolled empty view (a parked car, a post)."""
        return any(self._present(d) and not self.background.matches_view(frame, d.box)
                   for d in found)

    def _kit_area(self, box: tuple[float, float, float, float]) -> str | None:
        """The kit item whose area (grown by a quarter each side) holds the whole box."""
        x1, y1, x2, y2 = box
        for spec in self.cfg.equipment:
            rx, ry, rw, rh = spec.roi
            gx, gy = rw * 0.25, rh * 0.25
            if rx - gx <= x1 and x2 <= rx + rw + gx and ry - gy <= y1 and y2 <= ry + rh + gy:
                return spec.item
        return None

    def kit_lookalike(self, d: Detection) -> Detection:
        """A 'person' that is really a kit item (a lifebuoy ring read as a tiny child).

        All three must hold: the track was first seen inside the item's area, has never left
        it, and measures below KIT_LOOKALIKE_MAX_M. A child who walks up to the lifebuoy was
        first seen outside its area, and one standing in front of it is taller than that.
        """
        if d.meaning not in PERSON_MEANINGS or d.track_id is None:
            return d
        item = self._kit_area(d.box)
        tid = d.track_id
        if item is None or tid in self._left_kit:
            if len(self._left_kit) > 10_000:  # ids only grow: old ones never come back
                self._left_kit.clear()
            self._left_kit.add(tid)
            self._kit_born.pop(tid, None)
            return d
        born = self._kit_born.setdefault(tid, item)
        size = self.stature.stature_m(d.box) if self.stature is not None else None
        if born == item and size is not None and size < KIT_LOOKALIKE_MAX_M:
            return replace(d, meaning=item)
        return d

    def marks(self, detections: list[Detection] | None = None) -> list[Mark]:
        """Drawable boxes for the newest detections, with track id, height and child flag."""
        out = []
        for d in self.last_detections if detections is None else detections:
            tr = self.rules.tracks.get(d.track_id) if d.track_id is not None else None
            if d.meaning not in PERSON_MEANINGS or tr is None:
                out.append(Mark(d.box, f"{d.cls_name} {d.conf:.2f}"))
                continue
            s = tr.stature_m()
            child = self.rules.is_child(tr)
            text = f"#{tr.tid} " + (f"{s:.2f} m" if s is not None else "? m")
            text += {True: " child", False: " adult", None: " ?"}[child]
            out.append(Mark(d.box, text if tr.confirmed else text + " (unconfirmed)", child))
        return out

    def _emit(self, event: Event, frame: np.ndarray) -> Emission:
        """Attach a snapshot to events that show something."""
        if not self.snapshots or event.type in NO_SNAPSHOT:
            return Emission(event, None)
        try:
            jpeg = snapshot(frame, self.cfg, self.marks(),
                            caption=f"{event.type.value} {event.ts:%Y-%m-%d %H:%M:%S}Z")
        except (ValueError, OSError) as exc:  # never lose the event over its picture
            log.error("snapshot for %s failed: %s", event.id, exc)
            return Emission(event, None)
        event, raw = self._learning(event, frame)
        return Emission(event.model_copy(update={"snapshot": True}), jpeg, raw)

    def _learning(self, event: Event, frame: np.ndarray) -> tuple[Event, bytes | None]:
        """Critical events carry the person boxes and the unannotated frame (learning loop)."""
        if event.severity != Severity.CRITICAL or not self.cfg.deploy.learning_frames:
            return event, None
        boxes = [tuple(round(v, 4) for v in d.box) for d in self.last_detections
                 if d.meaning in PERSON_MEANINGS][:50]
        try:
            raw = encode_jpeg(frame)
        except ValueError as exc:
            log.error("frame for %s not encoded: %s", event.id, exc)
            return event.model_copy(update={"boxes": boxes}), None
        return event.model_copy(update={"boxes": boxes, "frame": True}), raw

    def reset(self) -> None:
        """A new video or a reconnected camera: tracker ids restart."""
        self.detector.reset()
        self.rules.reset()
        self.someone_in_zone = False
        self.background.reset()
        self.still.reset()
        self._kit_born.clear()
        self._left_kit.clear()
