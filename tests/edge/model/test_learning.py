"""The node's half of the learning loop: critical events carry person boxes and the raw frame."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.config import NodeConfig
from edge.link.outbox import Outbox
from edge.rules.pipeline import Pipeline
from protocol import Event
from protocol.limits import MAX_SNAPSHOT_BYTES
from tests.edge.conftest import T0


def _run(cfg: NodeConfig, detector: Any, assets: Path) -> list[Any]:
    """Eight frames of bus.jpg with the bank below row 0.75 (uncalibrated: possible children)."""
    detector.reset()
    pipe = Pipeline(cfg, detector)
    bus = cv2.imread(str(assets / "bus.jpg"))
    out: list[Any] = []
    for i in range(8):
        out += pipe.process(bus, i / 5, T0 + timedelta(seconds=i / 5))
    return out


ZONES = {"water": [[0, 0.95], [1, 0.95], [1, 1], [0, 1]],
         "bank": [[0, 0.75], [1, 0.75], [1, 0.95], [0, 0.95]]}


def test_critical_event_has_boxes_and_unannotated_frame(
        detector: Any, assets: Path, make_cfg: Callable[..., NodeConfig]) -> None:
    """The frame is the camera's own picture (no drawing), boxes are normalised people."""
    cfg = make_cfg(zones=ZONES, stature={"references": [], "child_max_m": 1.45},
                   deploy={"learning_frames": True})
    events = _run(cfg, detector, assets)
    assert events and all(e.event.severity == "critical" for e in events)
    for em in events:
        assert em.event.frame and em.frame and len(em.frame) <= MAX_SNAPSHOT_BYTES
        assert em.event.boxes and len(em.event.boxes) >= 3
        assert all(0 <= v <= 1 for b in em.event.boxes for v in b)
        assert all(b[0] < b[2] and b[1] < b[3] for b in em.event.boxes)
        raw = cv2.imdecode(np.frombuffer(em.frame, np.uint8), cv2.IMREAD_COLOR)
        bus = cv2.imread(str(assets / "bus.jpg"))
        assert raw.shape == bus.shape
        assert float(abs(raw.astype(int) - bus.astype(int)).mean()) < 4  # JPEG noise only
        assert em.frame != em.snapshot
    wire = events[0].event.to_wire()
    assert Event.model_validate(wire).boxes == events[0].event.boxes  # round trip, schema 1
    assert wire["schema"] == 1


def test_learning_frames_are_opt_in(detector: Any, assets: Path,
                                    make_cfg: Callable[..., NodeConfig]) -> None:
    """deploy.learning_frames is off unless a county turns it on: then neither boxes nor the
    frame (a second image that may show a minor) leave the node."""
    cfg = make_cfg(zones=ZONES, stature={"references": [], "child_max_m": 1.45})
    assert cfg.deploy.learning_frames is False
    events = _run(cfg, detector, assets)
    assert events and all(e.frame is None and not e.event.frame and e.event.boxes is None
                          for e in events)


def test_outbox_keeps_the_frame_and_upgrades_old_files(tmp_path: Path) -> None:
    """The frame survives in the outbox; an outbox written before frames gains the column."""
    old = tmp_path / "old.db"
    db = sqlite3.connect(old)
    db.execute("CREATE TABLE outbox (id TEXT PRIMARY KEY, payload TEXT NOT NULL, snapshot BLOB,"
               " severity TEXT NOT NULL, rank INTEGER NOT NULL, created REAL NOT NULL,"
               " attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0,"
               " last_sent REAL, texted INTEGER NOT NULL DEFAULT 0,"
               " texted_to TEXT NOT NULL DEFAULT '[]')")
    db.commit()
    db.close()
    box = Outbox(old)
    ev = Event.make("person_in_water", "n-01", "p", boxes=[(0.1, 0.2, 0.3, 0.9)], frame=True)
    assert box.put(ev, b"\xff\xd8snap", frame=b"\xff\xd8raw")
    item = box.due()[0]
    assert item.frame == b"\xff\xd8raw" and item.snapshot == b"\xff\xd8snap"
    assert item.event["boxes"] == [[0.1, 0.2, 0.3, 0.9]]
    box.close()
