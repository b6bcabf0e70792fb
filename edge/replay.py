"""pondwatch-edge replay: the whole pipeline on a recorded video, on the video's own clock."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.camera.sources import SourceError, open_source
from edge.config import NodeConfig
from edge.rules.engine import IdFactory
from edge.rules.pipeline import Pipeline
from edge.site.watch import SiteWatch
from edge.vision.detector import DetectorError, load_detector
from edge.vision.types import Detector
from protocol import Event

log = logging.getLogger(__name__)

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)  # replayed events are stamped EPOCH + source_t
_NS = uuid.UUID("6c1f3b52-96d4-4f0e-9a43-2f51e3b0c7a1")


def replay_ids(node_id: str, source: str) -> IdFactory:
    """An id factory giving the same event ids for the same node, file and frame."""
    name = Path(source).name

    def make(kind: str, track_id: int | None, t: float) -> str:
        """uuid5 of node, file, time, kind and track."""
        return uuid.uuid5(_NS, f"{node_id}/{name}/{t:.6f}/{kind}/{track_id}").hex

    return make


def _stable(event: Event, ids: IdFactory, t: float, renamed: dict[str, str]) -> Event:
    """A site-watch event with a replay-stable id; refs follow the ids they point at."""
    new_id = ids(str(event.type), None, t)
    renamed[event.id] = new_id
    update: dict[str, object] = {"id": new_id}
    if event.ref is not None:
        update["ref"] = renamed.get(event.ref, event.ref)
    return event.model_copy(update=update)


def replay(cfg: NodeConfig, source: str, events_out: str, snapshots_dir: str | None = None,
           detector: Detector | None = None, config_path: str | None = None) -> int:
    """Replay source through the node pipeline (people, kit, camera health), one JSON line
    per event; 0 on success."""
    try:
        src = open_source(source, cfg.camera.fps)
    except SourceError as exc:
        log.error("%s", exc)
        return 2
    if detector is None:
        try:
            detector = load_detector(cfg.model)
        except DetectorError as exc:
            log.error("%s", exc)
            src.close()
            return 2
    else:
        detector.reset()
    ids = replay_ids(cfg.node_id, source)
    clock = [0.0]
    site = SiteWatch(cfg, config_path, clock=lambda: clock[0])
    pipe = Pipeline(cfg, detector, ids=ids, empty_view=site.camera.reference)
    renamed: dict[str, str] = {}
    snap_dir = Path(snapshots_dir) if snapshots_dir else None
    if snap_dir is not None:
        snap_dir.mkdir(parents=True, exist_ok=True)
    out_path = Path(events_out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    n_events = 0
    t0: float | None = None
    try:
        with out_path.open("w", encoding="utf-8") as out:
            while (item := src.read()) is not None:
                frame, t = item
                t0 = t if t0 is None else t0
                source_t = round(t - t0, 6)
                wall = EPOCH + timedelta(seconds=source_t)
                clock[0] = source_t
                emissions = [(em.event, em.snapshot) for em in pipe.process(frame, source_t, wall)]
                emissions += [(_stable(ev, ids, source_t, renamed), None) for ev in site.check(
                    frame, source_t, wall, pipe.last_detections)]
                for event, snapshot in emissions:
                    line = event.to_wire()
                    line["source_t"] = source_t
                    out.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
                    n_events += 1
                    if snap_dir is not None and snapshot is not None:
                        (snap_dir / f"{event.id}.jpg").write_bytes(snapshot)
    finally:
        src.close()
    log.info("replayed %d frames of %s: %d events", pipe.stats.frames, source, n_events)
    return 0
