"""A malformed ack on the node's ack topic, on a real Mosquitto: logged, nothing forgotten, the
link keeps working."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from edge.link.mqtt import NodeLink
from edge.link.outbox import Outbox
from protocol import MAX_EVENT_BYTES, Ack, Event, Topics, encode
from protocol.limits import MAX_JSON_DEPTH
from server.link.broker import Mosquitto
from tests.edge.link.test_mqtt import FakeServer, node_cfg
from tests.support import wait_for

T = Topics()


def _bad_acks(held: str) -> dict[str, bytes]:
    """Ack payloads the node must refuse, by what is wrong; several name the held event."""
    return {
        "not JSON": b"ids: all",
        "not UTF-8": b"\xff\xfe{}",
        "not an object": json.dumps([held]).encode(),
        "ids not a list": json.dumps({"ids": held}).encode(),
        "id not a string": b'{"ids": [1]}',
        "unknown field": json.dumps({"ids": [held], "all": True}).encode(),
        "too many ids": json.dumps({"ids": [held] + ["x"] * 1000}).encode(),
        "oversized": json.dumps({"ids": [held, "x" * MAX_EVENT_BYTES]}).encode(),
        "nested too deep": b'{"ids": ' + b"[" * (MAX_JSON_DEPTH + 5) + b"]" * (MAX_JSON_DEPTH + 5)
                           + b"}",
        "integer too long to read": b'{"ids": [1' + b"0" * 5000 + b"]}",
    }


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "edge.link.mqtt" and r.getMessage().startswith("bad ack payload")]


def test_a_malformed_ack_is_logged_and_forgets_nothing(
        mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Each bad ack is logged naming what is wrong; the event it names stays in the outbox; a
    good ack sent after them is still honoured, and a new event still goes out."""
    caplog.set_level(logging.INFO, logger="edge.link.mqtt")
    server = FakeServer(mosquitto, confirm=False)
    cfg = node_cfg(mosquitto, tmp_path)
    box = Outbox(cfg.outbox, retry_s=3600, retry_max_s=3600)
    held = Event.make("person_in_water", cfg.node_id, cfg.pond_id, track_id=1)
    sentinel = Event.make("person_near_water", cfg.node_id, cfg.pond_id, track_id=2)
    box.put(held)
    box.put(sentinel)
    link = NodeLink(cfg, box)
    link.start()
    try:
        wait_for(lambda: {e["id"] for e in server.events} == {held.id, sentinel.id},
                 what="both events at the server")
        bad = _bad_acks(held.id)
        for payload in bad.values():
            server.c.publish(T.ack(cfg.node_id), payload, qos=1)
        server.c.publish(T.ack(cfg.node_id), encode(Ack(ids=[sentinel.id])), qos=1)
        wait_for(lambda: box.depth() == 1, what="the good ack after the bad ones honoured")
        assert [i.id for i in box.due(now=1e12)] == [held.id], "no bad ack confirmed anything"
        refusals = _refusals(caplog)
        assert len(refusals) == len(bad), refusals
        assert any("field all: Extra inputs are not permitted" in r for r in refusals)
        assert any("field ids: Input should be a valid list" in r for r in refusals)
        assert any("field ids: List should have at most 1000 items" in r for r in refusals)
        assert any(f"exceeds {MAX_EVENT_BYTES}" in r for r in refusals)
        assert any("integer string conversion" in r for r in refusals)
        assert any(f"nests deeper than {MAX_JSON_DEPTH}" in r for r in refusals)
        assert link.connected.is_set()

        late = Event.make("sos", cfg.node_id, cfg.pond_id)
        box.put(late)
        link.wake()
        wait_for(lambda: late.id in {e["id"] for e in server.events}, what="a new event sent")
        server.c.publish(T.ack(cfg.node_id), encode(Ack(ids=[held.id, late.id])), qos=1)
        wait_for(lambda: box.depth() == 0, what="the held and the new event confirmed")
    finally:
        link.stop()
        server.close()
