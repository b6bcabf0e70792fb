"""Durable on-disk outbox: events wait here until the server confirms it holds them."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.payloads import SEVERITY_RANK, Event, Severity

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id        TEXT PRIMARY KEY,
    payload   TEXT NOT NULL,
    snapshot  BLOB,
    severity  TEXT NOT NULL,
    rank      INTEGER NOT NULL,
    created   REAL NOT NULL,
    attempts  INTEGER NOT NULL DEFAULT 0,
    next_try  REAL NOT NULL DEFAULT 0,
    last_sent REAL,
    texted    INTEGER NOT NULL DEFAULT 0,
    texted_to TEXT NOT NULL DEFAULT '[]',
    frame     BLOB
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_try, rank, created);
CREATE INDEX IF NOT EXISTS outbox_evict ON outbox (rank DESC, created);
"""


@dataclass(frozen=True)
class OutboxItem:
    """One stored event with its delivery bookkeeping."""

    id: str
    event: dict[str, Any]
    snapshot: bytes | None
    severity: str
    created: float
    attempts: int
    texted: bool
    frame: bytes | None = None  # the unannotated frame of a critical event (learning loop)


class Outbox:
    """SQLite (WAL, synchronous=FULL) queue of events not yet confirmed by the server."""

    def __init__(self, path: str | Path, max_events: int = 20000,
                 retry_s: float = 5.0, retry_max_s: float = 60.0,
                 snapshot_retention_s: float | None = None) -> None:
        """Open or create the outbox; max_events bounds it, evicting the least urgent first;
        snapshots and frames unsent after snapshot_retention_s are deleted (None: kept).

        Deleted rows are overwritten on disk (secure_delete): snapshots may show minors."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_events = max_events
        self.retry_s = retry_s
        self.retry_max_s = retry_max_s
        self.snapshot_retention_s = snapshot_retention_s
        self._expired_at = float("-inf")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        cols = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        if "texted_to" not in cols:  # an outbox written by an older version
            self._db.execute("ALTER TABLE outbox ADD COLUMN texted_to TEXT NOT NULL DEFAULT '[]'")
        if "frame" not in cols:
            self._db.execute("ALTER TABLE outbox ADD COLUMN frame BLOB")
        self.evicted = 0

    def put(self, event: Event | dict[str, Any], snapshot: bytes | None = None,
            now: float | None = None, frame: bytes | None = None) -> bool:
        """Store an event durably before anything else sees it; False if it was there already
        or was evicted at once (the outbox is full of more urgent events)."""
        wire = event.to_wire() if isinstance(event, Event) else dict(event)
        severity = Severity(wire["severity"])
        now = time.time() if now is None else now
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO outbox (id, payload, snapshot, severity, rank, created,"
                " next_try, texted, frame) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
                (wire["id"], json.dumps(wire, ensure_ascii=False), snapshot, severity.value,
                 SEVERITY_RANK[severity], now, int(bool(wire.get("texted"))), frame))
            added = cur.rowcount == 1
            if added:
                added = wire["id"] not in self._evict_over_limit()
        return added

    def _evict_over_limit(self) -> set[str]:
        """Drop the least urgent, oldest events beyond max_events and return their ids (caller
        holds the lock)."""
        over = self.depth_unlocked() - self.max_events
        if over <= 0:
            return set()
        rows = self._db.execute(
            "SELECT id, severity FROM outbox ORDER BY rank DESC, created ASC LIMIT ?",
            (over,)).fetchall()
        for event_id, severity in rows:
            log.error("outbox full (%d): evicting %s event %s", self.max_events, severity, event_id)
            self._db.execute("DELETE FROM outbox WHERE id = ?", (event_id,))
        self.evicted += len(rows)
        return {event_id for event_id, _ in rows}

    def expire_snapshots(self, now: float | None = None) -> int:
        """Delete the snapshots and frames of events older than snapshot_retention_s (the
        events stay, marked as without snapshot); returns how many events lost images."""
        if self.snapshot_retention_s is None:
            return 0
        now = time.time() if now is None else now
        cutoff = now - self.snapshot_retention_s
        with self._lock:
            rows = self._db.execute(
                "SELECT id, payload FROM outbox WHERE created < ? AND"
                " (snapshot IS NOT NULL OR frame IS NOT NULL)", (cutoff,)).fetchall()
            for event_id, payload in rows:
                wire = json.loads(payload)
                wire.pop("snapshot", None)
                wire.pop("frame", None)
                self._db.execute("UPDATE outbox SET snapshot = NULL, frame = NULL, payload = ?"
                                 " WHERE id = ?", (json.dumps(wire, ensure_ascii=False), event_id))
        if rows:
            log.warning("outbox: deleted the unsent snapshots of %d event(s) older than %.0f "
                        "days", len(rows), self.snapshot_retention_s / 86400)
        return len(rows)

    def due(self, now: float | None = None, limit: int = 20) -> list[OutboxItem]:
        """Events to (re)send now, most urgent and oldest first (expiring old snapshots first,
        at most once a minute)."""
        now = time.time() if now is None else now
        if now - self._expired_at >= 60:
            self._expired_at = now
            self.expire_snapshots(now)
        with self._lock:
            rows = self._db.execute(
                "SELECT id, payload, snapshot, severity, created, attempts, texted, frame"
                " FROM outbox"
                " WHERE next_try <= ? ORDER BY rank, created LIMIT ?", (now, limit)).fetchall()
        return [_item(r) for r in rows]

    def mark_sent(self, event_id: str, now: float | None = None) -> None:
        """Record a send; the next try waits with exponential backoff unless confirmed."""
        now = time.time() if now is None else now
        with self._lock:
            row = self._db.execute("SELECT attempts FROM outbox WHERE id = ?",
                                   (event_id,)).fetchone()
            if row is None:
                return
            wait = min(self.retry_max_s, self.retry_s * (2 ** min(row[0], 10)))
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_sent = ?, next_try = ?"
                " WHERE id = ?", (now, now + wait, event_id))

    def retry_now(self) -> None:
        """Make every stored event due at once (after a reconnect)."""
        with self._lock:
            self._db.execute("UPDATE outbox SET next_try = 0")

    def confirm(self, ids: list[str]) -> int:
        """Forget events the server has committed; returns how many were removed."""
        if not ids:
            return 0
        with self._lock:
            cur = self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
            return cur.rowcount

    def depth_unlocked(self) -> int:
        """Number of stored events (caller holds the lock)."""
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def has_critical(self) -> bool:
        """Whether a critical event waits for the server's confirmation."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM outbox WHERE rank = ? LIMIT 1",
                                    (SEVERITY_RANK[Severity.CRITICAL],)).fetchone() is not None

    def depth(self) -> int:
        """Number of events not yet confirmed."""
        with self._lock:
            return self.depth_unlocked()

    def undelivered(self, min_age_s: float, now: float | None = None,
                    severity: str = Severity.CRITICAL.value) -> list[OutboxItem]:
        """Events of one severity held for at least min_age_s (for the SMS fallback)."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT id, payload, snapshot, severity, created, attempts, texted, frame"
                " FROM outbox"
                " WHERE severity = ? AND created <= ? ORDER BY created",
                (severity, now - min_age_s)).fetchall()
        return [_item(r) for r in rows]

    def reached(self, event_id: str) -> set[str]:
        """Numbers already texted about this event (kept across restarts)."""
        with self._lock:
            row = self._db.execute("SELECT texted_to FROM outbox WHERE id = ?",
                                   (event_id,)).fetchone()
        return set(json.loads(row[0])) if row else set()

    def mark_reached(self, event_id: str, number: str) -> None:
        """Record, durably, that one number got the text about this event."""
        with self._lock:
            row = self._db.execute("SELECT texted_to FROM outbox WHERE id = ?",
                                   (event_id,)).fetchone()
            if row is None:
                return
            numbers = sorted(set(json.loads(row[0])) | {number})
            self._db.execute("UPDATE outbox SET texted_to = ? WHERE id = ?",
                             (json.dumps(numbers), event_id))

    def mark_texted(self, event_id: str) -> None:
        """Record that the node texted this event itself; the MQTT copy will say so."""
        with self._lock:
            row = self._db.execute("SELECT payload FROM outbox WHERE id = ?",
                                   (event_id,)).fetchone()
            if row is None:
                return
            wire = json.loads(row[0])
            wire["texted"] = True
            self._db.execute("UPDATE outbox SET texted = 1, payload = ? WHERE id = ?",
                             (json.dumps(wire, ensure_ascii=False), event_id))

    def close(self) -> None:
        """Close the database; safe to call twice."""
        with self._lock, contextlib.suppress(sqlite3.ProgrammingError):
            self._db.close()


def _item(row: tuple[Any, ...]) -> OutboxItem:
    """An OutboxItem from a database row."""
    return OutboxItem(id=row[0], event=json.loads(row[1]), snapshot=row[2], severity=row[3],
                      created=row[4], attempts=row[5], texted=bool(row[6]), frame=row[7])
