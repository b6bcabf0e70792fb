"""The learning loop: an Ultralytics dataset from the frames of alerts the constables resolved."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from server.core.db import Alert, EventFrame, EventRow, TimelineEntry
from server.core.errors import ServerError
from server.core.files import private_dir, write_private

log = logging.getLogger(__name__)

VERDICTS = ("real", "false_alarm")


class DatasetError(ServerError, ValueError):
    """An export that cannot be written; nothing was written."""


@dataclass
class ExportCounts:
    """What the export wrote and what it left out, and why."""

    real: int = 0
    background: int = 0
    train: int = 0
    val: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, why: str) -> None:
        """Count one left-out frame."""
        self.skipped[why] = self.skipped.get(why, 0) + 1


def yolo_line(box: Any) -> str:
    """One YOLO label line (class 0) from a normalised (x1, y1, x2, y2) box."""
    x1, y1, x2, y2 = (min(1.0, max(0.0, float(v))) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"empty box {box}")
    return f"0 {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}"


def split_of(event_id: str, val_share: float) -> str:
    """train or val, fixed by the event id (the same frame lands in the same split every time)."""
    h = int(hashlib.sha256(event_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < val_share else "train"


def export(s: Session, since: datetime, out: Path, names: list[str] | None = None,
           val_share: float = 0.2) -> ExportCounts:
    """Write out/images/{train,val}, out/labels/{train,val} and out/data.yaml.

    Alerts a person resolved as real → their frames with YOLO labels from the boxes;
    false_alarm → the frames as background images with empty labels. Test alerts, alerts the
    node cleared itself and frames without a verdict are left out.
    """
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} is not empty; choose a new folder")
    if not 0 < val_share < 1:
        raise DatasetError("val_share must be between 0 and 1")
    # a person's verdict, not the node's own "it cleared" (auto_resolve also says real)
    by_person = exists().where(TimelineEntry.alert_id == Alert.id,
                               TimelineEntry.state == "resolved",
                               TimelineEntry.person_id.is_not(None))
    q = (select(EventRow, Alert, EventFrame)
         .join(Alert, Alert.id == EventRow.alert_id)
         .join(EventFrame, (EventFrame.event_id == EventRow.id)
               & (EventFrame.node_id == EventRow.node_id))
         .where(Alert.state == "resolved", Alert.outcome.in_(VERDICTS),
                Alert.resolved_at >= since, by_person)
         .order_by(EventRow.ts))
    rows = list(s.execute(q))
    counts = ExportCounts()
    items: list[tuple[str, bytes, list[str]]] = []
    for ev, alert, frame in rows:
        lines: list[str] = []
        if alert.outcome == "real":
            try:
                lines = [yolo_line(b) for b in ev.payload.get("boxes") or []]
            except (TypeError, ValueError):
                counts.skip("bad_boxes")
                continue
            if not lines:
                counts.skip("real_without_boxes")  # e.g. an SOS press: nobody to label
                continue
            counts.real += 1
        else:
            counts.background += 1
        items.append((ev.id, frame.data, lines))
    if not items:
        raise DatasetError(f"no resolved real or false_alarm alert with a frame since "
                           f"{since.isoformat()}")
    splits = {i[0]: split_of(i[0], val_share) for i in items}
    if len(items) > 1 and len(set(splits.values())) == 1:  # both splits need an image
        last = items[-1][0]
        splits[last] = "val" if splits[last] == "train" else "train"
    private_dir(out)  # images that may show minors: 0700 folders, 0600 files
    for sub in ("images", "labels", "images/train", "images/val", "labels/train", "labels/val"):
        private_dir(out / sub)
    for event_id, jpeg, lines in items:
        part = splits[event_id]
        write_private(out / "images" / part / f"{event_id}.jpg", jpeg)
        write_private(out / "labels" / part / f"{event_id}.txt",
                      "".join(line + "\n" for line in lines))
        setattr(counts, part, getattr(counts, part) + 1)
    class_names = names or ["person"]
    write_private(out / "data.yaml", yaml.safe_dump({
        "path": str(out.resolve()), "train": "images/train",
        "val": "images/val" if counts.val else "images/train",
        "names": dict(enumerate(class_names))}, allow_unicode=True, sort_keys=False))
    log.info("dataset %s: %d real, %d background (train %d, val %d), skipped %s", out,
             counts.real, counts.background, counts.train, counts.val, counts.skipped)
    return counts
