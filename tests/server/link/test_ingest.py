"""Ingest: idempotency, snapshots in either order, status/health, and every rejection path."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from protocol.limits import MAX_CMD_BYTES, MAX_EVENT_BYTES, MAX_HEALTH_BYTES, MAX_SNAPSHOT_BYTES
from protocol.payloads import Ack, Event, encode
from server.app import build
from server.core.db import Alert, EquipmentState, EventRow, Node, Snapshot, event_snapshot
from server.link.broker import Mosquitto, free_port
from server.link.ingest import ACK_MAX_IDS, STATUS_MAX_BYTES, Inbound
from server.runner import Server
from server.services import Services
from tests.server.conftest import FakeNode, PageReceiver, make_config, wait_for

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 1000 + b"\xff\xd9"
P = "pondwatch/v1/node"


@pytest.fixture
def svc(tmp_path: Path, receiver: PageReceiver):
    """Services with the registry imported, an ingestor that is never connected."""
    from server.link.ingest import Ingestor

    _, services = build(make_config(tmp_path, receiver, "mqtt://127.0.0.1:1"))
    services.prepare()
    services.ingest = Ingestor(services.cfg, services.sessions, services.clock,
                               services.metrics, "mqtt://127.0.0.1:1")
    yield services
    services.stop()


def _event(**kw) -> Event:
    kw.setdefault("ts", datetime(2026, 7, 1, 8, 0, tzinfo=UTC))
    return Event.make(kw.pop("type", "child_near_water"), kw.pop("node_id", "heyuan-01"),
                      kw.pop("pond_id", "heyuan-shantang"), **kw)


def _feed(svc: Services, topic: str, payload: bytes, qos: int = 1):
    assert svc.ingest is not None
    return svc.ingest.handle_batch([Inbound(topic, payload, 1, qos)])[0]


def _rejected(svc: Services, reason: str) -> float:
    return svc.metrics.registry.get_sample_value(
        "pondwatch_ingest_rejected_total", {"reason": reason}) or 0.0


def test_same_event_twice_is_one_row_and_acked_twice(svc: Services) -> None:
    ev = _event(track_id=1)
    a = _feed(svc, f"{P}/heyuan-01/event", encode(ev))
    b = _feed(svc, f"{P}/heyuan-01/event", encode(ev))
    assert a.event_id == b.event_id == ev.id
    assert a.new_alert and not b.new_alert
    with svc.sessions() as s:
        assert s.scalar(select(func.count()).select_from(EventRow)) == 1
        assert s.scalars(select(Alert)).one().event_count == 1
    assert svc.metrics.registry.get_sample_value("pondwatch_ingest_duplicates_total") == 1


@pytest.mark.parametrize("first", ["event", "snapshot"])
def test_snapshot_before_or_after_event(svc: Services, first: str) -> None:
    ev = _event(snapshot=True)
    msgs = {"event": (f"{P}/heyuan-01/event", encode(ev)),
            "snapshot": (f"{P}/heyuan-01/snapshot/{ev.id}", JPEG)}
    order = [first, "snapshot" if first == "event" else "event"]
    for k in order:
        _feed(svc, *msgs[k])
    _feed(svc, *msgs["snapshot"])  # duplicate snapshot is harmless
    with svc.sessions() as s:
        assert event_snapshot(s, ev.id).data == JPEG
        assert s.scalars(select(Alert)).one().snapshot_event_id == ev.id


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    (f"{P}/heyuan-01/event", b"{not json", "not_json"),
    (f"{P}/heyuan-01/event", b"[1, 2]", "not_json"),
    (f"{P}/heyuan-01/event", b'{"schema": 1, "type": "child_near_water"}', "schema"),
    (f"{P}/heyuan-01/event", json.dumps({"schema": 2}).encode(), "schema"),
    (f"{P}/heyuan-01/event", b"{" + b" " * (10 * 1024 * 1024) + b"}", "oversized"),
    (f"{P}/Heyuan_01!/event", b"{}", "topic"),
    (f"{P}/heyuan-01/weird", b"{}", "topic"),
    ("other/prefix/heyuan-01/event", b"{}", "topic"),
    (f"{P}/ghost-09/event", b"{}", "unknown_node"),
    (f"{P}/xiatang-01/event", None, "node_mismatch"),
    (f"{P}/heyuan-01/snapshot/abc", b"GIF89a", "not_jpeg"),
    (f"{P}/heyuan-01/snapshot/abc", b"\xff\xd8" + b"\x00" * 200_000, "oversized"),
    (f"{P}/heyuan-01/status", b'{"state": "sleeping", "ts": "2026-07-01T08:00:00Z", '
                              b'"version": "1"}', "schema"),
    (f"{P}/heyuan-01/health", b'{"ts": "yesterday", "version": "1"}', "schema"),
])
def test_bad_messages_are_rejected_counted_and_acked(svc: Services, topic: str,
                                                     payload: bytes | None, reason: str) -> None:
    if payload is None:  # heyuan-01's event on xiatang-01's topic: a spoof
        payload = encode(_event())
    out = _feed(svc, topic, payload)
    assert out.event_id is None
    assert _rejected(svc, reason) == 1
    with svc.sessions() as s:
        assert s.scalar(select(func.count()).select_from(EventRow)) == 0
    ok = _feed(svc, f"{P}/heyuan-01/event", encode(_event()))  # still working
    assert ok.event_id is not None


def test_status_and_health_are_stored(svc: Services) -> None:
    ts = "2026-07-01T08:00:00Z"
    _feed(svc, f"{P}/heyuan-01/status", json.dumps(
        {"state": "online", "ts": ts, "version": "0.1.0"}).encode())
    _feed(svc, f"{P}/heyuan-01/health", json.dumps(
        {"ts": ts, "version": "0.1.0", "fps": 4.8, "equipment": {"lifebuoy": "present",
                                                              "sign": "skipped"}}).encode(), qos=0)
    with svc.sessions() as s:
        n = s.get(Node, "heyuan-01")
        assert n.state == "online" and n.health["fps"] == 4.8
        assert s.get(EquipmentState, ("heyuan-shantang", "lifebuoy")).state == "present"
        assert s.get(EquipmentState, ("heyuan-shantang", "sign")).state == "unknown"
    _feed(svc, f"{P}/heyuan-01/status", json.dumps(
        {"state": "offline", "ts": ts, "version": "0.1.0"}).encode())
    _feed(svc, f"{P}/heyuan-01/status", b"")  # cleared retained message: ignored
    with svc.sessions() as s:
        alert = s.scalars(select(Alert)).one()
        assert (alert.kind, alert.urgent, alert.state) == ("node_offline", False, "open")
    _feed(svc, f"{P}/heyuan-01/status", json.dumps(
        {"state": "online", "ts": ts, "version": "0.1.0"}).encode())
    with svc.sessions() as s:
        assert s.scalars(select(Alert)).one().state == "resolved"


def test_real_broker_bad_payloads_counted_server_keeps_running(
        config, receiver: PageReceiver, node: FakeNode) -> None:
    with Server(config) as srv:
        assert srv.services.ingest.connected.wait(10)
        node.publish(f"{P}/heyuan-01/event", b"\x00garbage")
        node.publish(f"{P}/heyuan-01/event", b"{" + b" " * (10 * 1024 * 1024) + b"}")
        node.publish(f"{P}/heyuan-01/event", b'{"schema": 1}')
        node.publish(f"{P}/nobody-01/event", encode(_event(node_id="nobody-01")))
        ev = node.event("person_in_water")
        node.wait_acked({ev.id})
        m = srv.services.metrics.registry
        for reason in ("not_json", "oversized", "schema", "unknown_node"):
            assert m.get_sample_value("pondwatch_ingest_rejected_total", {"reason": reason}) == 1
        metrics = srv.services.metrics.render().decode()
        assert 'pondwatch_ingest_rejected_total{reason="oversized"} 1.0' in metrics
        receiver.wait(1)


def test_web_serves_while_broker_absent_then_ingests_when_it_appears(
        tmp_path: Path, receiver: PageReceiver) -> None:
    import httpx

    port = free_port()
    cfg = make_config(tmp_path, receiver, f"mqtt://127.0.0.1:{port}")
    with Server(cfg) as srv:
        assert httpx.get(srv.url + "/healthz").json()["mqtt_connected"] is False
        with Mosquitto(port=port, data_dir=tmp_path / "late") as broker:
            assert srv.services.ingest.connected.wait(15)
            n = FakeNode(broker)
            try:
                ev = n.event("sos")
                n.wait_acked({ev.id})
            finally:
                n.close()
        assert receiver.wait(1)[0]["title"].startswith("【紧急】")


def test_events_published_while_server_away_are_queued_by_broker(
        config, receiver: PageReceiver, node: FakeNode) -> None:
    with Server(config) as srv:
        assert srv.services.ingest.connected.wait(10)
    ids = {node.event("person_near_water", track_id=i).id for i in range(5)}
    with Server(config) as srv:
        node.wait_acked(ids)
        with srv.services.sessions() as s:
            assert s.scalar(select(func.count()).select_from(EventRow)) == 5


def test_private_broker_is_started_and_restarted(tmp_path: Path, receiver: PageReceiver) -> None:
    cfg = make_config(tmp_path, receiver, None)
    with Server(cfg) as srv:
        sup = srv.services.supervisor
        assert sup is not None and sup.broker.alive
        assert srv.services.ingest.connected.wait(10)
        sup.broker.kill()
        wait_for(lambda: sup.broker.alive, 10, "broker restart")
        wait_for(lambda: srv.services.ingest.connected.is_set(), 20, "reconnect")
        n = FakeNode(sup.broker, password=sup.credentials.password("heyuan-01"))
        try:
            ev = n.event("child_near_water")
            n.wait_acked({ev.id})
        finally:
            n.close()
        assert srv.services.metrics.registry.get_sample_value(
            "pondwatch_broker_restarts_total") == 1


def test_mixed_batch_commits_good_rejects_bad_and_dedups_within_batch(svc: Services) -> None:
    ev, other = _event(snapshot=True), _event(type="person_near_water")
    batch = [Inbound(f"{P}/heyuan-01/event", encode(ev), 1, 1),
             Inbound(f"{P}/heyuan-01/event", b"{oops", 2, 1),
             Inbound(f"{P}/heyuan-01/event", encode(ev), 3, 1),
             Inbound(f"{P}/heyuan-01/snapshot/{ev.id}", JPEG, 4, 1),
             Inbound(f"{P}/ghost-01/event", encode(other), 5, 1),
             Inbound(f"{P}/heyuan-01/event", encode(other), 6, 1)]
    outs = svc.ingest.handle_batch(batch)
    assert [o.event_id for o in outs] == [ev.id, None, ev.id, None, None, other.id]
    assert _rejected(svc, "not_json") == 1 and _rejected(svc, "unknown_node") == 1
    with svc.sessions() as s:
        assert s.scalar(select(func.count()).select_from(EventRow)) == 2
        assert event_snapshot(s, ev.id) is not None
        assert s.scalars(select(Alert)).one().snapshot_event_id == ev.id


def test_batch_that_hits_a_replica_race_is_redone_one_by_one(svc: Services) -> None:
    ev = _event()
    with svc.sessions() as s, s.begin():  # another replica stored it between our check and insert
        s.add(EventRow(id=ev.id, node_id="heyuan-01", pond_id="heyuan-shantang", type=ev.type.value,
                       severity="critical", ts=ev.ts, received_at=ev.ts, payload=ev.to_wire()))
    real_get = svc.ingest._event.__func__  # noqa: SLF001

    def racing(self, s, topic, node, payload, now):  # the existence check misses the row
        with mock.patch.object(s, "get", side_effect=lambda m, k: None if m is EventRow
                               else type(s).get(s, m, k)):
            return real_get(self, s, topic, node, payload, now)

    with mock.patch.object(type(svc.ingest), "_event", racing):
        outs = svc.ingest.handle_batch([Inbound(f"{P}/heyuan-01/event", encode(ev), 1, 1),
                                        Inbound(f"{P}/heyuan-01/status", b"", 2, 1)])
    assert outs[0].event_id == ev.id  # acknowledged as a duplicate
    assert svc.metrics.registry.get_sample_value("pondwatch_ingest_duplicates_total") == 1


def test_private_broker_on_fixed_port_keeps_its_state_beside_the_database(
        tmp_path: Path, receiver: PageReceiver) -> None:
    port = free_port()
    cfg = make_config(tmp_path, receiver, None, mqtt={"private_port": port})
    with Server(cfg) as srv:
        assert srv.services.broker_url == f"mqtt://127.0.0.1:{port}"
        assert srv.services.supervisor.broker.data_dir == tmp_path / "mosquitto"
        assert srv.services.ingest.connected.wait(10)
    assert (tmp_path / "mosquitto").is_dir()


def test_an_event_is_written_before_a_heartbeat_backlog(svc: Services) -> None:
    import paho.mqtt.client as mqtt

    from protocol.payloads import Health

    ing = svc.ingest
    assert ing is not None

    def arrive(topic: str, payload: bytes, qos: int, mid: int) -> None:
        msg = mqtt.MQTTMessage(mid, topic.encode())
        msg.payload, msg.qos = payload, qos
        ing._on_message(ing.client, None, msg)

    beat = encode(Health(ts=datetime(2026, 7, 1, 8, 0, tzinfo=UTC), version="1"))
    nodes = ("xiatang-01", "beitang-01", "heyuan-01")  # each within its share of the queue
    for i in range(250):  # a backlog after a restart: more than one batch of heartbeats
        arrive(f"{P}/{nodes[i % 3]}/health", beat, 0, i)
    arrive(f"{P}/heyuan-01/event", encode(_event(track_id=1)), 1, 900)
    arrive(f"{P}/heyuan-01/event", encode(_event(track_id=2)), 1, 901)
    first = ing.take_batch(0)
    assert [m.mid for m in first] == [900, 901]  # the events, in their order, alone
    beats = ing.take_batch(0)
    assert len(beats) == 200 and [m.mid for m in beats[:3]] == [0, 1, 2]
    arrive(f"{P}/heyuan-01/event", encode(_event(track_id=3)), 1, 902)
    assert [m.mid for m in ing.take_batch(0)] == [902]  # ahead of the 50 heartbeats left
    assert [m.mid for m in ing.take_batch(0)] == list(range(200, 250))
    assert ing.take_batch(0) == []


def test_a_heartbeat_batch_forgets_samples_past_retention_once(svc: Services) -> None:
    from datetime import timedelta

    from protocol.payloads import Health
    from server.core.db import HealthSample

    now = svc.clock.now()
    old = now - timedelta(days=svc.cfg.health_history_days, hours=1)
    with svc.sessions() as s, s.begin():
        s.add_all([HealthSample(node_id=n, at=old, fps=1.0) for n in ("heyuan-01", "xiatang-01",
                                                                      "beitang-01")])
    beat = encode(Health(ts=now, version="1", fps=5.0))
    assert svc.ingest is not None
    svc.ingest.handle_batch([Inbound(f"{P}/{n}/health", beat, 0, 0)
                             for n in ("heyuan-01", "xiatang-01", "heyuan-01")])
    with svc.sessions() as s:
        kept = sorted((r.node_id, r.fps) for r in s.scalars(select(HealthSample)))
    assert kept == [("beitang-01", 1.0), ("heyuan-01", 5.0), ("heyuan-01", 5.0),
                    ("xiatang-01", 5.0)]  # beitang sent nothing: its old sample waits


@pytest.mark.parametrize(("kind", "limit"), [
    ("event", MAX_EVENT_BYTES), ("health", MAX_HEALTH_BYTES), ("cmd/result", MAX_CMD_BYTES),
    ("status", STATUS_MAX_BYTES), ("snapshot/abc", MAX_SNAPSHOT_BYTES)])
def test_each_kind_is_cut_at_its_wire_limit(svc: Services, kind: str, limit: int) -> None:
    """At protocol/limits.py's size for its kind a message is read (a blank JSON object is then
    refused for its content, a JPEG stored); one byte more is 'oversized'."""
    topic = f"{P}/heyuan-01/{kind}"
    if kind.startswith("snapshot"):
        at_limit = b"\xff\xd8" + b"\x00" * (limit - 2)
    else:
        at_limit = b"{" + b" " * (limit - 2) + b"}"
    _feed(svc, topic, at_limit)
    assert _rejected(svc, "oversized") == 0
    if kind.startswith("snapshot"):
        with svc.sessions() as s:
            assert len(s.get(Snapshot, {"event_id": "abc", "node_id": "heyuan-01"}).data) == limit
    else:
        assert _rejected(svc, "schema") == 1
    _feed(svc, topic, at_limit + b" ")
    assert _rejected(svc, "oversized") == 1


def test_acks_go_out_in_chunks_the_ack_model_accepts() -> None:
    """ACK_MAX_IDS is protocol Ack's own cap on ids (protocol/limits.py has no name for it)."""
    Ack(ids=["e"] * ACK_MAX_IDS)
    with pytest.raises(ValidationError):
        Ack(ids=["e"] * (ACK_MAX_IDS + 1))
