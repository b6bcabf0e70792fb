"""pondwatch-edge replay: the whole pipeline on a recorded video, on the video's own clock."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.config import NodeConfig
from edge.detector import Detector, DetectorError, load_detector
from edge.pipeline import Pipeline
from edge.rules import IdFactory
from edge.sources import SourceError, open_source

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


def replay(cfg: NodeConfig, source: str, events_out: str, snapshots_dir: str | None = None,
           detector: Detector | None = None) -> int:
    """Replay source through the pipeline, writing one JSON line per event; 0 on success."""
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
    pipe = Pipeline(cfg, detector, ids=replay_ids(cfg.node_id, source))
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
                for em in pipe.process(frame, source_t, wall):
                    line = em.event.to_wire()
                    line["source_t"] = source_t
                    out.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
                    n_events += 1
                    if snap_dir is not None and em.snapshot is not None:
                        (snap_dir / f"{em.event.id}.jpg").write_bytes(em.snapshot)
    finally:
        src.close()
    log.info("replayed %d frames of %s: %d events", pipe.stats.frames, source, n_events)
    return 0
