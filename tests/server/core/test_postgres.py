"""The ingest → alert → page → ack path on PostgreSQL, when PONDWATCH_TEST_PG_URL is set."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text

from protocol.payloads import encode
from server.core.db import Alert, EventRow
from server.runner import Server
from tests.server.conftest import FakeNode, PageReceiver, make_config

PG_URL = os.environ.get("PONDWATCH_TEST_PG_URL")
pytestmark = [pytest.mark.postgres,
              pytest.mark.skipif(not PG_URL, reason="PONDWATCH_TEST_PG_URL not set")]


@pytest.fixture
def pg_url():
    """A private schema in the test database, dropped afterwards."""
    assert PG_URL
    schema = f"pw_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL)
    with admin.begin() as c:
        c.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as c:
        c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def test_ingest_alert_page_ack_on_postgres(tmp_path: Path, receiver: PageReceiver, mosquitto,
                                           pg_url: str) -> None:
    cfg = make_config(tmp_path, receiver, mosquitto.url, database=pg_url)
    node = FakeNode(mosquitto)
    try:
        with Server(cfg) as srv:
            assert srv.services.engine.dialect.name == "postgresql"
            assert srv.services.ingest.connected.wait(10)
            ev = node.event("person_in_water", track_id=1)
            node.event("person_in_water", track_id=2)
            node.publish(node.topics.event("heyuan-01"), encode(ev))  # a redelivery
            link = re.search(r"http://\S+/a/\S+", receiver.wait(1)[0]["message"]).group(0)
            node.wait_acked({ev.id})
            assert httpx.post(link, data={"action": "ack"}).status_code == 303
            with srv.services.sessions() as s:
                assert s.scalar(select(func.count()).select_from(EventRow)) == 2
                a = s.scalars(select(Alert)).one()
                assert a.state == "acknowledged" and a.event_count == 2
                assert a.opened_at.tzinfo is not None
        # restart: migrations already at head, registry re-imported
        with Server(cfg) as srv, srv.services.sessions() as s:
            assert s.scalars(select(Alert)).one().state == "acknowledged"
    finally:
        node.close()


def test_missed_heartbeats_and_schema_on_postgres(tmp_path: Path, receiver: PageReceiver,
                                                  mosquitto, pg_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from server.core.db import Base, Node
    from tests.server.conftest import wait_for
    from tests.server.fleet.test_node_watch import T0, _heartbeat
    from tests.support import FakeClock

    clock = FakeClock(T0)
    cfg = make_config(tmp_path, receiver, mosquitto.url, database=pg_url)
    node = FakeNode(mosquitto)
    try:
        with Server(cfg, clock=clock) as srv:
            with srv.services.engine.connect() as conn:
                assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            assert srv.services.ingest.connected.wait(10)
            _heartbeat(node, clock, interval_s=10)
            with srv.services.sessions() as s:
                wait_for(lambda: s.get(Node, "heyuan-01", populate_existing=True).health_at,
                         what="heartbeat")
            clock.advance(30)
            wait_for(lambda: srv.services.node_watch.check() or receiver.for_path("tech-wang"),
                     what="node offline")
            srv.services.escalator.tick()
            receiver.wait(1)
            clock.advance(300)
            srv.services.escalator.tick()
            assert srv.services.pager.idle(10)
            assert len(receiver.for_path("tech-wang")) == 1
            _heartbeat(node, clock, interval_s=10)
            with srv.services.sessions() as s:
                wait_for(lambda: s.scalars(select(Alert).execution_options(
                    populate_existing=True)).one().state == "resolved", what="resolved")
    finally:
        node.close()
