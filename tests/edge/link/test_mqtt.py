"""The node link against a real Mosquitto: delivery, end-to-end acks, status and will."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import NodeConfig
from edge.link.mqtt import NodeLink
from edge.link.outbox import Outbox
from protocol import Ack, Event, Topics, encode
from server.link.broker import Mosquitto
from tests.support import wait_for

T = Topics()



def node_cfg(broker: Mosquitto, tmp_path: Path, node: str = "heyuan-01") -> NodeConfig:
    return NodeConfig.model_validate({
        "node_id": node, "pond_id": "heyuan-shantang",
        "zones": {"water": [[0, 0.6], [1, 0.6], [1, 1], [0, 1]]},
        "mqtt": {"url": broker.url}, "outbox": str(tmp_path / f"{node}.db"),
    })


class FakeServer:
    """A paho subscriber that records events and, when told to, confirms them."""

    def __init__(self, broker: Mosquitto, confirm: bool = True) -> None:
        self.events: list[dict[str, object]] = []
        self.snapshots: dict[str, bytes] = {}
        self.status: list[tuple[str, str]] = []
        self.confirm = confirm
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fake-server",
                             protocol=mqtt.MQTTv5)
        self.c.on_message = self._msg
        ready = threading.Event()
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.connect("127.0.0.1", broker.port)
        self.c.subscribe(T.all_nodes("#"), qos=1)
        self.c.loop_start()
        assert ready.wait(5)

    def _msg(self, c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        topic = T.parse(msg.topic)
        if topic.kind == "event":
            ev = json.loads(msg.payload)
            self.events.append(ev)
            if self.confirm:
                c.publish(T.ack(topic.node_id), encode(Ack(ids=[ev["id"]])), qos=1)
        elif topic.kind == "snapshot":
            self.snapshots[topic.event_id or ""] = msg.payload
        elif topic.kind == "status":
            self.status.append((topic.node_id, json.loads(msg.payload)["state"]))

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def server(mosquitto: Mosquitto) -> Iterator[FakeServer]:
    s = FakeServer(mosquitto)
    yield s
    s.close()


def test_event_delivered_and_forgotten_only_after_server_ack(
        mosquitto: Mosquitto, server: FakeServer, tmp_path: Path) -> None:
    cfg = node_cfg(mosquitto, tmp_path)
    box = Outbox(cfg.outbox)
    ev = Event.make("child_near_water", cfg.node_id, cfg.pond_id, track_id=3, snapshot=True)
    box.put(ev, b"\xff\xd8jpeg")
    link = NodeLink(cfg, box)
    link.start()
    try:
        wait_for(lambda: box.depth() == 0)
        assert [e["id"] for e in server.events] == [ev.id]
        assert server.snapshots[ev.id] == b"\xff\xd8jpeg"
        wait_for(lambda: (cfg.node_id, "online") in server.status)
    finally:
        link.stop()
    wait_for(lambda: server.status[-1] == (cfg.node_id, "offline"))


def test_unconfirmed_event_stays_and_is_resent(mosquitto: Mosquitto, tmp_path: Path) -> None:
    silent = FakeServer(mosquitto, confirm=False)
    cfg = node_cfg(mosquitto, tmp_path)
    box = Outbox(cfg.outbox, retry_s=0.2, retry_max_s=0.2)
    ev = Event.make("person_in_water", cfg.node_id, cfg.pond_id, track_id=1)
    box.put(ev)
    link = NodeLink(cfg, box)
    link.start()
    try:
        wait_for(lambda: len(silent.events) >= 3)
        assert box.depth() == 1, "a broker PUBACK alone must not empty the outbox"
        silent.confirm = True
        wait_for(lambda: box.depth() == 0)
    finally:
        link.stop()
        silent.close()


def test_events_raised_while_broker_is_down_arrive_after(tmp_path: Path) -> None:
    broker = Mosquitto(data_dir=tmp_path / "mq")
    cfg = node_cfg(broker, tmp_path)
    box = Outbox(cfg.outbox)
    stop = threading.Event()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        stop.wait(seconds)
    link = NodeLink(cfg, box, sleep=sleep)
    link.start()
    ids = []
    try:
        for _i in range(5):
            ev = Event.make("sos", cfg.node_id, cfg.pond_id)
            box.put(ev)
            ids.append(ev.id)
            link.wake()
        wait_for(lambda: waits, 15, "the link to find no broker and wait to retry")
        broker.start()
        srv = FakeServer(broker)
        wait_for(lambda: box.depth() == 0, timeout=30)
        assert sorted({e["id"] for e in srv.events}) == sorted(ids)
        srv.close()
    finally:
        stop.set()
        link.stop()
        broker.close()


def test_last_will_says_offline_when_node_dies(mosquitto: Mosquitto, server: FakeServer,
                                               tmp_path: Path) -> None:
    cfg = node_cfg(mosquitto, tmp_path)
    link = NodeLink(cfg, Outbox(cfg.outbox))
    link.start()
    wait_for(lambda: (cfg.node_id, "online") in server.status)
    link.client._sock_close()  # the connection dies without DISCONNECT, as on power loss
    link.client.loop_stop()
    wait_for(lambda: server.status[-1] == (cfg.node_id, "offline"), timeout=60)
