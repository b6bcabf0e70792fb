"""scripts/backup.sh and scripts/restore.sh: back up a live database, wipe it, restore it,
and find every row as it was, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.engine import make_url

from protocol.payloads import Event, encode
from server.core.config import parse_config
from server.link.ingest import Inbound, Ingestor
from server.services import Services
from tests.server.conftest import SECRET, PageReceiver, registry_text
from tests.support import ROOT

PG_URL = os.environ.get("PONDWATCH_TEST_PG_URL")
ENV = dict(os.environ, PYTHON=sys.executable)


def _script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "scripts" / name), *args], env=ENV,
                          capture_output=True, text=True)


def _fill(url: str, tmp: Path, receiver: PageReceiver) -> None:
    """A registry, events, an alert with its timeline: what a county's database holds."""
    reg = tmp / "registry.yaml"
    reg.write_text(registry_text(receiver), encoding="utf-8")
    cfg = parse_config({"environment": "dev", "secret_key": SECRET, "database": url,
                        "mqtt": {"url": "mqtt://127.0.0.1:1"}, "registry": str(reg)})
    svc = Services(cfg)
    svc.prepare()
    ing = Ingestor(cfg, svc.sessions, svc.clock, svc.metrics, "mqtt://127.0.0.1:1")
    for i, kind in enumerate(["child_near_water", "person_near_water", "sos"] * 5):
        ev = Event.make(kind, "heyuan-01", "heyuan-shantang", ts=datetime.now(UTC),
                        track_id=i, zone="bank")
        ing.process(Inbound("pondwatch/v1/node/heyuan-01/event", encode(ev), i + 1, 1))
    svc.engine.dispose()


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted."""
    eng = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(eng)
        with eng.connect() as c:
            return {t.name: sorted(tuple(map(str, r)) for r in c.execute(t.select()))
                    for t in meta.sorted_tables}
    finally:
        eng.dispose()


def _round_trip(url: str, tmp: Path, receiver: PageReceiver, wipe: Any) -> None:
    _fill(url, tmp, receiver)
    before = _dump(url)
    assert len(before["events"]) == 15 and before["alerts"] and before["people"]
    out = tmp / "pondwatch.backup"
    done = _script("backup.sh", url, str(out))
    assert done.returncode == 0, done.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    wipe()
    assert _dump(url).get("events", []) == [], "wiped"
    done = _script("restore.sh", url, str(out))
    assert done.returncode == 0, done.stderr
    assert _dump(url) == before


def test_sqlite_backup_wipe_restore(tmp_path: Path, receiver: PageReceiver) -> None:
    db = tmp_path / "server.db"
    url = f"sqlite:///{db}"

    def wipe() -> None:
        for p in tmp_path.glob("server.db*"):
            p.unlink()
    _round_trip(url, tmp_path, receiver, wipe)
    kept = list(tmp_path.glob("server.db.before-restore-*"))
    assert len(kept) == 1, "the (empty) database found at restore time is kept, not lost"


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    done = _script("backup.sh", "mysql://x/y", str(tmp_path / "b"))
    assert done.returncode == 2 and "unsupported database URL" in done.stderr
    done = _script("restore.sh", f"sqlite:///{tmp_path / 'x.db'}", str(tmp_path / "missing"))
    assert done.returncode == 1 and "no backup file" in done.stderr
    (tmp_path / "junk").write_bytes(b"not a database at all" * 100)
    done = _script("restore.sh", f"sqlite:///{tmp_path / 'x.db'}", str(tmp_path / "junk"))
    assert done.returncode != 0


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh database in the test cluster, dropped afterwards."""
    assert PG_URL
    name = f"pw_backup_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="PONDWATCH_TEST_PG_URL not set")
def test_postgres_backup_wipe_restore(tmp_path: Path, receiver: PageReceiver,
                                      pg_database: str) -> None:
    def wipe() -> None:
        eng = create_engine(pg_database)
        with eng.begin() as c:
            c.execute(text("DROP SCHEMA public CASCADE"))
            c.execute(text("CREATE SCHEMA public"))
        eng.dispose()
    _round_trip(pg_database, tmp_path, receiver, wipe)


def test_backups_are_private_and_only_the_newest_are_kept(tmp_path: Path,
                                                         receiver: PageReceiver) -> None:
    db = tmp_path / "server.db"
    url = f"sqlite:///{db}"
    _fill(url, tmp_path, receiver)
    folder = tmp_path / "backups"
    folder.mkdir()
    for day in range(1, 6):  # last week's backups, oldest first, and an unrelated file
        old = folder / f"pondwatch-2026-06-0{day}.db"
        old.write_bytes(b"old")
        os.utime(old, (1_700_000_000 + day * 86400,) * 2)
    (folder / "notes.txt").write_text("keep me")
    # PYTHON runs the SQLite copy; this one also notes the mode of the file being written
    probe = tmp_path / "python-probe.sh"
    probe.write_text(f'#!/bin/sh\n"{sys.executable}" "$@"; rc=$?\n'
                     f'stat -c %a "$3" > "{tmp_path / "tmp-mode"}"\nexit $rc\n')
    probe.chmod(0o755)
    out = folder / "pondwatch-2026-07-01.db"
    done = subprocess.run(["bash", str(ROOT / "scripts" / "backup.sh"), url, str(out)],
                          env=dict(ENV, PYTHON=str(probe), PONDWATCH_BACKUP_KEEP="3"),
                          capture_output=True, text=True, preexec_fn=lambda: os.umask(0o022))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "tmp-mode").read_text().strip() == "600", "readable while written"
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in folder.iterdir()) == [
        "notes.txt", "pondwatch-2026-06-04.db", "pondwatch-2026-06-05.db", out.name]
