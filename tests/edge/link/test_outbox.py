"""The outbox keeps events across crashes and evicts the least urgent first."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge.link.outbox import Outbox
from protocol import Event

ROOT = Path(__file__).resolve().parents[3]


def _event(kind: str = "child_near_water") -> Event:
    return Event.make(kind, "heyuan-01", "heyuan-shantang", track_id=1)


def test_put_due_confirm(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    ev = _event()
    assert box.put(ev, b"jpeg")
    assert not box.put(ev), "the same id twice is stored once"
    [item] = box.due(now=1e12)
    assert item.id == ev.id and item.snapshot == b"jpeg"
    assert item.event["type"] == "child_near_water"
    box.mark_sent(ev.id, now=1000.0)
    assert box.due(now=1000.1) == [], "a sent event waits for its backoff"
    assert [i.id for i in box.due(now=1006.0)] == [ev.id], "unconfirmed events are re-sent"
    box.mark_sent(ev.id, now=1006.0)
    assert box.due(now=1012.0) == [], "backoff doubles"
    box.retry_now()
    assert len(box.due(now=1012.0)) == 1
    assert box.confirm([ev.id, "unknown"]) == 1
    assert box.depth() == 0


def test_eviction_never_drops_critical_before_info(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_events=3)
    crit = [_event("person_in_water") for _ in range(2)]
    info = _event("person_near_water")
    box.put(crit[0], now=1)
    box.put(info, now=2)
    box.put(crit[1], now=3)
    box.put(_event("equipment_missing"), now=4)
    ids = {i.id for i in box.due(now=1e12, limit=10)}
    assert info.id not in ids and {c.id for c in crit} <= ids
    assert box.evicted == 1


def test_mark_texted_changes_the_payload(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    ev = _event()
    box.put(ev, now=100.0)
    assert box.undelivered(min_age_s=60, now=150.0) == []
    [item] = box.undelivered(min_age_s=60, now=161.0)
    assert not item.texted
    box.mark_texted(ev.id)
    [item] = box.due(now=1e12)
    assert item.texted and item.event["texted"] is True


def test_survives_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    code = (
        "import os, signal, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from edge.link.outbox import Outbox\n"
        "from protocol import Event\n"
        f"box = Outbox({str(db)!r})\n"
        "for i in range(5):\n"
        "    box.put(Event.make('sos', 'heyuan-01', 'p', id=f'ev{i}'))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False)
    assert proc.returncode == -signal.SIGKILL
    box = Outbox(db)
    assert sorted(i.id for i in box.due(now=1e12)) == [f"ev{i}" for i in range(5)]


def _file_bytes(box: Outbox) -> bytes:
    """The outbox's database file after folding the WAL into it."""
    box._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return box.path.read_bytes() + box.path.with_name(box.path.name + "-wal").read_bytes()


def test_a_confirmed_snapshot_leaves_no_bytes_on_disk(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """secure_delete: a deleted image of a minor is overwritten, not left in free pages,
    also with an SQLite built without SQLITE_SECURE_DELETE (Debian's has it on)."""
    connect = sqlite3.connect

    def insecure(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = connect(*args, **kwargs)
        db.execute("PRAGMA secure_delete=OFF")
        return db

    monkeypatch.setattr(sqlite3, "connect", insecure)
    box = Outbox(tmp_path / "o.db")
    marker = b"MINOR-FACE-" * 150
    ev = _event()
    box.put(ev, b"\xff\xd8" + marker, frame=b"\xff\xd8" + marker)
    assert marker in _file_bytes(box)
    box.confirm([ev.id])
    assert marker not in _file_bytes(box)


def test_unsent_snapshots_expire_after_the_retention(tmp_path: Path) -> None:
    day = 86400.0
    box = Outbox(tmp_path / "o.db", snapshot_retention_s=30 * day)
    old, new = _event("person_in_water"), _event("person_in_water")
    box.put(old.model_copy(update={"snapshot": True, "frame": True}), b"\xff\xd8old",
            now=1000.0, frame=b"\xff\xd8raw")
    box.put(new.model_copy(update={"snapshot": True}), b"\xff\xd8new", now=1000.0 + 20 * day)
    items = {i.id: i for i in box.due(now=1000.0 + 31 * day)}
    assert (items[old.id].snapshot, items[old.id].frame) == (None, None)
    assert not items[old.id].event.get("snapshot") and not items[old.id].event.get("frame")
    assert items[new.id].snapshot == b"\xff\xd8new" and items[new.id].event["snapshot"]
    assert box.depth() == 2, "the events themselves are still sent"
    assert b"\xff\xd8old" not in _file_bytes(box)
