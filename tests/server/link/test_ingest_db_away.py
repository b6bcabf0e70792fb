"""The database going away under ingest: the message is retried, nothing is acknowledged to the
node or the broker meanwhile, nothing is lost, and a server stopped while the database is away
leaves the message unacknowledged so the broker hands it to the next one (real Mosquitto, real
SQLite locked by another connection)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from server.core.config import ServerConfig
from server.core.db import Alert, EventRow
from server.runner import Server
from tests.server.conftest import FakeNode, PageReceiver
from tests.support import wait_for

RETRY = "database error while ingesting"


def _db_path(cfg: ServerConfig) -> str:
    """The SQLite file of a test config."""
    return cfg.database.removeprefix("sqlite:///")


@contextmanager
def database_away(srv: Server) -> Iterator[None]:
    """Another connection holds SQLite's write lock (a backup, a stuck admin shell) until the
    block ends. The server's lock wait is cut from 10 s to 0.1 s so each try fails quickly:
    what is tested is what ingest does with the failure, not how long SQLite waits."""
    def short_wait(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=100")

    event.listen(srv.services.engine, "connect", short_wait)
    srv.services.engine.dispose()  # every connection from now on waits 0.1 s
    holder = sqlite3.connect(_db_path(srv.cfg), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.rollback()
        holder.close()


def _retries(caplog: pytest.LogCaptureFixture) -> int:
    """How many times ingest has met the database away and said it retries."""
    return sum(RETRY in r.getMessage() for r in caplog.records)


def test_event_is_retried_until_the_database_is_back_and_only_then_acked(
        config: ServerConfig, receiver: PageReceiver, node: FakeNode,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="server.link.ingest")
    with Server(config) as srv:
        assert srv.services.ingest is not None and srv.services.ingest.connected.wait(10)
        with database_away(srv):
            ev = node.event("person_in_water")
            wait_for(lambda: _retries(caplog) >= 2, 15, "two failed tries of the write")
            assert ev.id not in node.acked  # the node keeps it in its outbox
            assert not receiver.pages
        node.wait_acked({ev.id})
        with srv.services.sessions() as s:
            row = s.get(EventRow, ev.id)
            assert row is not None and row.alert_id is not None
            assert s.get(Alert, row.alert_id).kind == "person_in_water"
        assert receiver.wait(1)[0]["title"].startswith("【紧急】")


def test_stopping_while_the_database_is_away_leaves_the_event_unacked(
        config: ServerConfig, receiver: PageReceiver, node: FakeNode,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="server.link.ingest")
    with Server(config) as srv:
        assert srv.services.ingest is not None and srv.services.ingest.connected.wait(10)
        with database_away(srv):
            ev = node.event("sos")
            wait_for(lambda: _retries(caplog) >= 1, 15, "a failed try of the write")
            srv.stop()
        assert ev.id not in node.acked
        with srv.services.sessions() as s:
            assert s.get(EventRow, ev.id) is None
    # Neither the node nor the broker had an acknowledgement: the broker keeps the message in
    # the server's session and hands it to the server that starts next.
    with Server(config) as again:
        node.wait_acked({ev.id}, 15)
        with again.services.sessions() as s:
            assert s.get(EventRow, ev.id) is not None
        assert receiver.wait(1)[0]["title"].startswith("【紧急】")
