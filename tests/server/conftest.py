"""Server test fixtures: real page receivers, a registry, a config and an MQTT node stand-in."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from protocol.payloads import Event, encode
from protocol.topics import Topics
from scripts.page_receiver import PageReceiver
from server.core.config import ServerConfig, parse_config
from server.link.broker import Mosquitto, free_port
from tests.support import wait_for  # noqa: F401  (re-exported for tests/server)

SECRET = "test-secret-key-0123456789abcdef"


@pytest.fixture
def receiver() -> Iterator[PageReceiver]:
    """A page receiver for one test."""
    r = PageReceiver()
    yield r
    r.close()


def registry_text(receiver: PageReceiver, smtp_port: int | None = None) -> str:
    """A small county: one station, two grids, three ponds, people with json:// pages."""
    mail = (f'"mailto://127.0.0.1:{smtp_port}?to=duty@example.com&from=pw@example.com'
            f'&mode=insecure", ') if smtp_port else ""
    return f"""
stations:
  - {{id: quanjiang, name: 泉江派出所, duty_desk: [duty-quanjiang], area_officers: [liu-min]}}
grids:
  - {{id: gongyu, name: 共裕网格, station: quanjiang, constable: guo-yong, backup: kang-donghai}}
  - {{id: dongshan, name: 东山网格, station: quanjiang, constable: kang-donghai, backup: guo-yong}}
ponds:
  - {{id: heyuan-shantang, name: 禾源山塘, village: 禾源村, grid: gongyu, lat: 26.33, lon: 114.52}}
  - {{id: xiatang, name: 下塘, village: 下村, grid: dongshan, lat: 26.30, lon: 114.50}}
  - {{id: beitang, name: 北塘, village: 北村, grid: gongyu}}
nodes:
  - {{id: heyuan-01, pond: heyuan-shantang}}
  - {{id: xiatang-01, pond: xiatang}}
  - {{id: beitang-01, pond: beitang}}
people:
  - {{id: guo-yong, name: 郭勇, role: constable, phone: "+8613800000000",
     notify: ["{receiver.url('guo-yong')}"]}}
  - {{id: kang-donghai, name: 康东海, role: constable, notify: ["{receiver.url('kang-donghai')}"]}}
  - {{id: liu-min, name: 刘敏, role: area_officer, notify: ["{receiver.url('liu-min')}"]}}
  - {{id: duty-quanjiang, name: 泉江值班台, role: duty_desk,
     notify: [{mail}"{receiver.url('duty-quanjiang')}"]}}
  - {{id: tech-wang, name: 王工, role: technician, notify: ["{receiver.url('tech-wang')}"]}}
"""


def make_config(tmp_path: Path, receiver: PageReceiver, broker_url: str | None = None,
                smtp_port: int | None = None, **extra: Any) -> ServerConfig:
    """A server config with SQLite in tmp_path and the test registry."""
    reg = tmp_path / "registry.yaml"
    reg.write_text(registry_text(receiver, smtp_port), encoding="utf-8")
    port = free_port()
    data: dict[str, Any] = {
        "environment": "dev", "secret_key": SECRET,
        "database": f"sqlite:///{tmp_path / 'server.db'}",
        "mqtt": {"url": broker_url, "client_id": f"pw-server-{port}"} if broker_url else {},
        "http": {"bind": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"},
        "registry": str(reg),
    }
    data.update(extra)
    return parse_config(data)


@pytest.fixture
def config(tmp_path: Path, receiver: PageReceiver, mosquitto: Mosquitto) -> ServerConfig:
    """Config against the test broker."""
    return make_config(tmp_path, receiver, mosquitto.url)


class FakeNode:
    """A node stand-in: publishes events with QoS 1 and collects the server's acks."""

    def __init__(self, broker: Mosquitto, node_id: str = "heyuan-01",
                 prefix: str = "pondwatch/v1", password: str | None = None,
                 ca_file: Path | None = None) -> None:
        """Connect with MQTT v5 (optionally TLS + password) and subscribe to the ack topic."""
        self.node_id, self.topics = node_id, Topics(prefix)
        self.acked: set[str] = set()
        self._cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{node_id}",
                                  protocol=mqtt.MQTTv5)
        if ca_file:
            self.client.tls_set(ca_certs=str(ca_file))
        if password:
            self.client.username_pw_set(node_id, password)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe(self.topics.ack(node_id), qos=1)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.acked.update(json.loads(msg.payload)["ids"])
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish and wait for the broker's PUBACK."""
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def event(self, type_: str = "child_near_water", pond_id: str = "heyuan-shantang",
              **fields: Any) -> Event:
        """Raise an event like the node would."""
        fields.setdefault("ts", datetime.now(UTC))
        ev = Event.make(type_, self.node_id, pond_id, **fields)
        self.publish(self.topics.event(self.node_id), encode(ev))
        return ev

    def wait_acked(self, ids: set[str], timeout: float = 10.0) -> None:
        """Wait until the server confirmed every id."""
        end = time.monotonic() + timeout
        with self._cond:
            while not ids <= self.acked:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"not acked: {sorted(ids - self.acked)}")
                self._cond.wait(left)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def node(mosquitto: Mosquitto) -> Iterator[FakeNode]:
    """A fake node heyuan-01 on the test broker."""
    n = FakeNode(mosquitto)
    yield n
    n.close()


