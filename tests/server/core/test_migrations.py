"""Migrations: head matches the models, and 0002 → head keeps existing rows usable."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import delete, text

from server.core.db import Base, Node, Person, Snapshot, make_engine, make_sessions
from server.core.migrate import alembic_config, upgrade


def test_head_matches_models(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(eng)
    with eng.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    eng.dispose()
    assert diff == []


def test_upgrade_from_0002_keeps_people_and_nodes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    eng = make_engine(url)
    cfg = alembic_config(url)
    with eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
    with eng.begin() as conn:
        conn.execute(text("INSERT INTO stations (id, name, duty_desk, area_officers) "
                          "VALUES ('s', 'S', '[]', '[]')"))
        conn.execute(text("INSERT INTO grids (id, name, station_id, policy) "
                          "VALUES ('g', 'G', 's', 'default')"))
        conn.execute(text("INSERT INTO ponds (id, name, village, grid_id) "
                          "VALUES ('p', 'P', '', 'g')"))
        conn.execute(text("INSERT INTO nodes (id, pond_id, state) VALUES ('n-01', 'p', 'online')"))
        conn.execute(text("INSERT INTO people (id, name, role, notify) "
                          "VALUES ('t', 'T', 'technician', '[]')"))
    upgrade(eng)
    with make_sessions(eng)() as s:
        person, node = s.get(Person, "t"), s.get(Node, "n-01")
        assert person is not None and person.stations == []
        assert node is not None and (node.heartbeat_s, node.watch_deadline) == (None, None)
    eng.dispose()


def test_deleted_snapshots_leave_no_bytes_in_the_sqlite_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """secure_delete on every server connection, also with an SQLite built without
    SQLITE_SECURE_DELETE (Debian's has it on): a purged image is overwritten on disk."""
    connect = sqlite3.dbapi2.connect

    def insecure(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = connect(*args, **kwargs)
        db.execute("PRAGMA secure_delete=OFF")
        return db

    monkeypatch.setattr(sqlite3.dbapi2, "connect", insecure)  # what SQLAlchemy calls
    path = tmp_path / "s.db"
    eng = make_engine(f"sqlite:///{path}")
    upgrade(eng)
    marker = b"MINOR-FACE-" * 150
    now = datetime(2026, 7, 1, tzinfo=UTC)
    with make_sessions(eng)() as s, s.begin():
        s.add(Snapshot(event_id="e1", node_id="n1", received_at=now, data=b"\xff\xd8" + marker))
    with eng.begin() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    assert marker in path.read_bytes()
    with make_sessions(eng)() as s, s.begin():
        s.execute(delete(Snapshot))
    with eng.begin() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    eng.dispose()
    assert marker not in path.read_bytes()
