"""Ingest against a hostile node: deeply nested JSON, a flood, snapshots and clearing events
that name another node's events."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import func, select

from protocol.payloads import Event, encode
from protocol.topics import requested_snapshot_id
from server.app import build
from server.core.db import Alert, EventFrame, EventRow, Snapshot, TimelineEntry, event_snapshot
from server.link.ingest import Inbound, Ingestor
from server.link.throttle import NODE_BURST, NODE_RATE_PER_S
from server.services import ORPHAN_S, Services
from tests.server.conftest import PageReceiver, make_config
from tests.support import FakeClock

P = "pondwatch/v1/node"
JPEG_A = b"\xff\xd8" + b"A" * 500 + b"\xff\xd9"
JPEG_B = b"\xff\xd8" + b"B" * 500 + b"\xff\xd9"
T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def svc(tmp_path: Path, receiver: PageReceiver):
    """Services on a fake clock with the registry imported; an ingestor never connected."""
    _, services = build(make_config(tmp_path, receiver, "mqtt://127.0.0.1:1"),
                        clock=FakeClock(T0))
    services.prepare()
    services.ingest = Ingestor(services.cfg, services.sessions, services.clock,
                               services.metrics, "mqtt://127.0.0.1:1")
    yield services
    services.stop()


def _event(node: str = "heyuan-01", pond: str = "heyuan-shantang", type_: str = "sos",
           **kw) -> Event:
    return Event.make(type_, node, pond, ts=T0, **kw)


def _feed(svc: Services, *msgs: tuple[str, bytes]):
    assert svc.ingest is not None
    return svc.ingest.handle_batch([Inbound(t, p, i, 1) for i, (t, p) in enumerate(msgs)])


def _rejected(svc: Services, reason: str) -> float:
    return svc.metrics.registry.get_sample_value(
        "pondwatch_ingest_rejected_total", {"reason": reason}) or 0.0


def test_deeply_nested_json_is_one_rejected_message(
        svc: Services, caplog: pytest.LogCaptureFixture) -> None:
    deep = b'{"x": ' + b"[" * 7000 + b"]" * 7000 + b"}"  # under the 16 KiB event limit
    good = [_event(track_id=i, type_="person_near_water") for i in range(2)]
    caplog.set_level(logging.INFO, logger="server.link.ingest")
    outs = _feed(svc, (f"{P}/heyuan-01/event", encode(good[0])),
                 (f"{P}/heyuan-01/event", deep), (f"{P}/heyuan-01/event", encode(good[1])))
    assert [o.event_id for o in outs] == [good[0].id, None, good[1].id]
    assert _rejected(svc, "nested") == 1 and _rejected(svc, "internal") == 0
    assert not any("one by one" in r.getMessage() for r in caplog.records), \
        "the batch was redone message by message"
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"


def _message(topic: str, payload: bytes, qos: int = 0) -> mqtt.MQTTMessage:
    m = mqtt.MQTTMessage(mid=0, topic=topic.encode())
    m.payload, m.qos = payload, qos
    return m


def test_a_flooding_node_cannot_crowd_out_other_nodes_heartbeats(svc: Services) -> None:
    ingest = svc.ingest
    assert ingest is not None
    beat = b'{"ts": "2026-07-01T08:00:00Z", "version": "1"}'

    def flood() -> int:
        """5x the queue from heyuan-01 at one instant; how many got in (then drained)."""
        for _ in range(5 * svc.cfg.ingest_queue):
            ingest._on_message(ingest.client, None, _message(f"{P}/heyuan-01/health", beat))
        queued = [ingest.queue.get_nowait()[2] for _ in range(ingest.queue.qsize())]
        for q in queued:
            ingest.throttle.done(q.node)
        return len(queued)

    for _ in range(5 * svc.cfg.ingest_queue):
        ingest._on_message(ingest.client, None, _message(f"{P}/heyuan-01/health", beat))
    ingest._on_message(ingest.client, None, _message(f"{P}/xiatang-01/health", beat))
    queued = [ingest.queue.get_nowait()[2] for _ in range(ingest.queue.qsize())]
    assert [q.node for q in queued].count("xiatang-01") == 1, "the other node's beat is in"
    first = [q.node for q in queued].count("heyuan-01")
    assert first <= ingest.throttle.max_queued < svc.cfg.ingest_queue, "its share of the queue"
    assert _rejected(svc, "queue_full") == 0 and _rejected(svc, "rate_limited") > 0
    for q in queued:
        ingest.throttle.done(q.node)
    assert first + flood() + flood() == NODE_BURST, "then its burst of tokens is spent"
    svc.clock.advance(1.0)  # type: ignore[attr-defined]
    assert flood() == NODE_RATE_PER_S, "and refills at its rate"


def test_snapshots_are_keyed_by_node_and_event(svc: Services) -> None:
    ev = _event(snapshot=True)
    # xiatang-01 guesses heyuan-01's next event id and sends its own JPEG under it first
    _feed(svc, (f"{P}/xiatang-01/snapshot/{ev.id}", JPEG_B))
    _feed(svc, (f"{P}/heyuan-01/snapshot/{ev.id}", JPEG_A), (f"{P}/heyuan-01/event", encode(ev)))
    with svc.sessions() as s:
        alert = s.scalars(select(Alert)).one()
        snap = event_snapshot(s, alert.snapshot_event_id)
        assert snap is not None and snap.data == JPEG_A, "the alert shows its own node's JPEG"
    # once the event is known, another node's JPEG or frame under its id is refused
    _feed(svc, (f"{P}/xiatang-01/snapshot/{ev.id}-frame", JPEG_B),
          (f"{P}/xiatang-01/snapshot/{ev.id}", JPEG_B))
    assert _rejected(svc, "node_mismatch") == 2
    with svc.sessions() as s:
        assert s.scalar(select(func.count()).select_from(EventFrame)) == 0


def test_a_clearing_event_ends_only_its_own_nodes_events(svc: Services) -> None:
    ev = _event()
    _feed(svc, (f"{P}/heyuan-01/event", encode(ev)))
    end = _event("xiatang-01", "xiatang", "event_end", ref=ev.id, reason="gone")
    out = _feed(svc, (f"{P}/xiatang-01/event", encode(end)))
    assert out[0].event_id is None and _rejected(svc, "node_mismatch") == 1
    with svc.sessions() as s:
        assert s.get(EventRow, end.id) is None
        assert not [t for t in s.scalars(select(TimelineEntry)) if "ended" in (t.detail or "")]
    own = _event(type_="event_end", ref=ev.id, reason="gone")
    assert _feed(svc, (f"{P}/heyuan-01/event", encode(own)))[0].event_id == own.id
    # an event id already used by another node is not that node's duplicate
    stolen = Event.make("sos", "xiatang-01", "xiatang", ts=T0, id=ev.id)
    assert _feed(svc, (f"{P}/xiatang-01/event", encode(stolen)))[0].event_id is None


def test_orphan_snapshots_are_purged_but_requested_ones_kept(svc: Services) -> None:
    ev = _event(snapshot=True)
    req = requested_snapshot_id()
    _feed(svc, (f"{P}/heyuan-01/snapshot/{ev.id}", JPEG_A),
          (f"{P}/heyuan-01/snapshot/never-followed", JPEG_A),
          (f"{P}/heyuan-01/snapshot/{req}", JPEG_A), (f"{P}/heyuan-01/event", encode(ev)))
    svc.clock.advance(ORPHAN_S + 1)  # type: ignore[attr-defined]
    assert svc.purge_snapshots() == 1
    with svc.sessions() as s:
        assert sorted(x.event_id for x in s.scalars(select(Snapshot))) == sorted([ev.id, req])


def test_requested_snapshot_ids_are_unique() -> None:
    ids = {requested_snapshot_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(i.startswith("snap-") and len(i) <= 64 for i in ids)
