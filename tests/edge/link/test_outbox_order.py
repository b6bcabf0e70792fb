"""The outbox under pressure: a critical event jumps a backlog, and eviction when it is full."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.link.mqtt import NodeLink
from edge.link.outbox import Outbox
from protocol import Event
from server.link.broker import Mosquitto
from tests.edge.link.test_mqtt import FakeServer, node_cfg
from tests.support import wait_for


def _event(kind: str, node: str = "heyuan-01") -> Event:
    return Event.make(kind, node, "heyuan-shantang", track_id=1)


def test_a_critical_event_behind_a_backlog_of_info_is_due_first(tmp_path: Path) -> None:
    """Sixty older info events wait; the critical one put last is the first due, also while
    the backlog is half sent and waiting on its backoff."""
    box = Outbox(tmp_path / "o.db")
    backlog = [_event("person_near_water") for _ in range(60)]
    for i, ev in enumerate(backlog):
        box.put(ev, now=1000.0 + i)
    first = box.due(now=2000.0, limit=20)
    assert [i.id for i in first] == [ev.id for ev in backlog[:20]], "oldest info first"
    for item in first:
        box.mark_sent(item.id, now=2000.0)
    crit = _event("person_in_water")
    box.put(crit, now=2001.0)
    due = box.due(now=2001.0, limit=20)
    assert due[0].id == crit.id
    assert [i.id for i in due[1:]] == [ev.id for ev in backlog[20:39]]


def test_the_link_sends_the_critical_event_before_the_backlog(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """On a real broker: the critical event queued behind 60 info events reaches the server
    first, and the backlog follows."""
    server = FakeServer(mosquitto)
    cfg = node_cfg(mosquitto, tmp_path)
    box = Outbox(cfg.outbox)
    backlog = [_event("person_near_water") for _ in range(60)]
    for i, ev in enumerate(backlog):
        box.put(ev, now=1000.0 + i)
    crit = _event("person_in_water")
    box.put(crit, now=2000.0)
    link = NodeLink(cfg, box)
    link.start()
    try:
        wait_for(lambda: box.depth() == 0, what="every event confirmed")
        assert server.events[0]["id"] == crit.id
        assert {e["id"] for e in server.events[1:]} == {ev.id for ev in backlog}
    finally:
        link.stop()
        server.close()


def test_full_of_critical_events_the_oldest_goes(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Only critical events held: a new one still gets in, the oldest is evicted and logged."""
    box = Outbox(tmp_path / "o.db", max_events=3)
    crit = [_event("sos") for _ in range(4)]
    for i, ev in enumerate(crit[:3]):
        assert box.put(ev, now=100.0 + i)
    assert box.put(crit[3], now=200.0)
    assert [i.id for i in box.due(now=1e12, limit=10)] == [ev.id for ev in crit[1:]]
    assert box.evicted == 1 and box.depth() == 3
    assert f"evicting critical event {crit[0].id}" in caplog.text


def test_put_of_an_event_evicted_at_once_says_so(tmp_path: Path) -> None:
    """An info event put into an outbox full of critical ones is evicted by its own put:
    put() returns False, nothing more urgent is lost, and it counts as evicted."""
    box = Outbox(tmp_path / "o.db", max_events=2)
    crit = [_event("person_submerged") for _ in range(2)]
    for ev in crit:
        assert box.put(ev, now=100.0)
    info = _event("person_near_water")
    assert not box.put(info, now=200.0), "an event that is not stored is not reported stored"
    assert {i.id for i in box.due(now=1e12)} == {ev.id for ev in crit}
    assert box.evicted == 1
    assert box.put(info, now=201.0) is False, "evicted again, not mistaken for a duplicate"
    assert box.evicted == 2
