"""Missed heartbeats: offline after 3 intervals on a fake clock, one technician page, cleared
when heard again, no second page on Last Will or restart; real Mosquitto and HTTP receiver."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from server.core.db import Alert, Node, TimelineEntry
from server.link.broker import Mosquitto
from server.runner import Server
from tests.server.conftest import FakeNode, PageReceiver, make_config, wait_for
from tests.support import FakeClock

T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


def _node(srv: Server, node_id: str = "heyuan-01") -> Node:
    with srv.services.sessions() as s:
        node = s.get(Node, node_id)
        assert node is not None
        return node


def _offline_alerts(srv: Server) -> list[Alert]:
    with srv.services.sessions() as s:
        return list(s.scalars(select(Alert).where(Alert.kind == "node_offline")
                              .order_by(Alert.id)))


def _heartbeat(node: FakeNode, clock: FakeClock, **extra: Any) -> None:
    body = {"ts": clock.now().isoformat(), "version": "0.1.0", **extra}
    node.publish(node.topics.health(node.node_id), json.dumps(body).encode(), qos=0)


def _heard_at(srv: Server, when: datetime) -> Node:
    """Wait until the server stored a heartbeat received at `when` (fake time)."""
    return wait_for(lambda: (n := _node(srv)).health_at == when and n, what="heartbeat stored")


def _wait_offline(srv: Server, what: str) -> None:
    """Run the watch until the node is offline (its own thread may get there first)."""
    wait_for(lambda: srv.services.node_watch.check() or _node(srv).state == "offline", what=what)


def _settle(srv: Server) -> None:
    """Run the watch and one escalation tick now and let the pages go out."""
    srv.services.node_watch.check()
    srv.services.escalator.tick()
    assert srv.services.pager.idle(10)


def test_three_missed_heartbeats_page_technician_once_and_heartbeat_clears(
        tmp_path: Path, receiver: PageReceiver, mosquitto: Mosquitto) -> None:
    clock = FakeClock(T0)
    cfg = make_config(tmp_path, receiver, mosquitto.url)
    node = FakeNode(mosquitto)
    srv = Server(cfg, clock=clock).start()
    try:
        assert srv.services.ingest is not None and srv.services.ingest.connected.wait(10)
        _heartbeat(node, clock, interval_s=10)          # the node says: every 10 s
        n = _heard_at(srv, T0)
        assert (n.state, n.heartbeat_s) == ("online", 10)
        assert n.watch_deadline == T0 + timedelta(seconds=30)

        clock.advance(29)                                # two and a bit missed: not yet
        assert srv.services.node_watch.check() == []
        _heartbeat(node, clock, interval_s=10)           # heard at +29 s: new window
        _heard_at(srv, T0 + timedelta(seconds=29))
        clock.advance(29.5)                              # +58.5 s: within 3 × 10 s of +29
        assert srv.services.node_watch.check() == []
        _settle(srv)
        assert receiver.for_path("tech-wang") == [] and _offline_alerts(srv) == []

        clock.advance(0.5)                               # +59 s: three intervals of silence
        _wait_offline(srv, "node marked offline")
        srv.services.escalator.tick()
        receiver.wait(1)
        assert srv.services.pager.idle(10)
        page = receiver.for_path("tech-wang")
        assert len(page) == 1 and "设备离线" in page[0]["title"]
        [alert] = _offline_alerts(srv)
        assert (alert.subject, alert.urgent, alert.state) == ("heyuan-01", False, "notified")
        with srv.services.sessions() as s:
            notes = [t.detail for t in s.scalars(select(TimelineEntry).where(
                TimelineEntry.alert_id == alert.id, TimelineEntry.kind == "note"))]
        assert any("no heartbeat for 30 s (3 missed)" in d for d in notes), notes

        # The broker's Last Will arrives later: same outage, no second alert or page.
        status = {"state": "offline", "ts": clock.now().isoformat(), "version": "0.1.0"}
        node.publish(node.topics.status(node.node_id), json.dumps(status).encode())
        clock.advance(600)
        wait_for(lambda: srv.services.ingest is not None
                 and srv.services.ingest.queue.empty(), what="ingest idle")
        _settle(srv)
        assert len(_offline_alerts(srv)) == 1 and len(receiver.for_path("tech-wang")) == 1
    finally:
        srv.stop()

    # A restart while the node is still offline does not page again.
    clock.advance(3600)
    srv = Server(cfg, clock=clock).start()
    try:
        assert srv.services.ingest is not None and srv.services.ingest.connected.wait(10)
        _settle(srv)
        clock.advance(120)
        _settle(srv)
        assert len(_offline_alerts(srv)) == 1 and len(receiver.for_path("tech-wang")) == 1

        # Heard again: a heartbeat (no status message) resolves the task, the node is online.
        heard = clock.now()
        _heartbeat(node, clock, interval_s=10)
        _heard_at(srv, heard)
        [alert] = _offline_alerts(srv)
        assert (alert.state, alert.outcome) == ("resolved", "real")
        assert _node(srv).state == "online"

        # A second outage is a second alert and a second page, exactly once again.
        clock.advance(30)
        _wait_offline(srv, "offline again")
        srv.services.escalator.tick()
        receiver.wait(2)
        clock.advance(300)
        _settle(srv)
        assert len(_offline_alerts(srv)) == 2 and len(receiver.for_path("tech-wang")) == 2
    finally:
        srv.stop()
        node.close()


def test_default_interval_status_online_and_restart_grace(
        tmp_path: Path, receiver: PageReceiver, mosquitto: Mosquitto) -> None:
    clock = FakeClock(T0)
    cfg = make_config(tmp_path, receiver, mosquitto.url)
    node = FakeNode(mosquitto)
    srv = Server(cfg, clock=clock).start()
    try:
        assert srv.services.ingest is not None and srv.services.ingest.connected.wait(10)
        # A node that has never been heard of is not watched (not installed yet).
        assert _node(srv, "xiatang-01").watch_deadline is None
        # status online alone starts the watch with the default 30 s interval.
        status = {"state": "online", "ts": clock.now().isoformat(), "version": "0.1.0"}
        node.publish(node.topics.status(node.node_id), json.dumps(status).encode())
        wait_for(lambda: _node(srv).state == "online", what="online")
        assert _node(srv).watch_deadline == T0 + timedelta(seconds=90)
        _heartbeat(node, clock)                          # no interval_s: default applies
        _heard_at(srv, T0)
        assert _node(srv).heartbeat_s is None
    finally:
        srv.stop()

    # The server is away for 10 minutes (heartbeats are QoS 0 and lost meanwhile): after the
    # restart the node gets a full window before it counts as offline.
    clock.advance(600)
    srv = Server(cfg, clock=clock).start()
    try:
        assert _node(srv).watch_deadline == clock.now() + timedelta(seconds=90)
        assert srv.services.node_watch.check() == []
        clock.advance(89)
        assert srv.services.node_watch.check() == []
        clock.advance(1)
        _wait_offline(srv, "offline after the grace")
        srv.services.escalator.tick()
        assert len(receiver.wait(1)) == 1
        assert len(_offline_alerts(srv)) == 1
    finally:
        srv.stop()
        node.close()


def test_bad_heartbeat_interval_is_rejected(tmp_path: Path, receiver: PageReceiver,
                                            mosquitto: Mosquitto) -> None:
    clock = FakeClock(T0)
    cfg = make_config(tmp_path, receiver, mosquitto.url)
    node = FakeNode(mosquitto)
    srv = Server(cfg, clock=clock).start()
    try:
        assert srv.services.ingest is not None and srv.services.ingest.connected.wait(10)
        _heartbeat(node, clock, interval_s=0)
        reg = srv.services.metrics.registry
        wait_for(lambda: reg.get_sample_value("pondwatch_ingest_rejected_total",
                                              {"reason": "schema"}) == 1, what="rejection")
        n = _node(srv)
        assert (n.health_at, n.watch_deadline, n.state) == (None, None, "unknown")
    finally:
        srv.stop()
        node.close()
