"""Server test fixtures: real page receivers, a registry, a config and an MQTT node stand-in."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from protocol.payloads import Event, encode
from protocol.topics import Topics
from server.broker import Mosquitto, free_port
from server.config import ServerConfig, parse_config

SECRET = "test-secret-key-0123456789abcdef"


class PageReceiver:
    """A real HTTP server collecting the JSON bodies Apprise json:// posts."""

    def __init__(self, delay_s: float = 0.0, status: int = 200) -> None:
        """Listen on a free loopback port; optionally answer slowly or with an error."""
        self.pages: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.times: list[float] = []
        self.delay_s, self.status = delay_s, status
        self._cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                with outer._cond:
                    outer.pages.append(json.loads(body))
                    outer.paths.append(self.path)
                    outer.times.append(time.monotonic())
                    outer._cond.notify_all()
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *_a: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "page") -> str:
        """The Apprise json:// URL for this receiver."""
        return f"json://127.0.0.1:{self.port}/{path}"

    def wait(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until n pages arrived (poll with timeout); return them."""
        end = time.monotonic() + timeout
        with self._cond:
            while len(self.pages) < n:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {n} pages, got {len(self.pages)}")
                self._cond.wait(left)
            return list(self.pages)

    def for_path(self, path: str) -> list[dict[str, Any]]:
        """Pages posted to one path (one path per person)."""
        with self._cond:
            return [p for p, q in zip(self.pages, self.paths, strict=True) if q == f"/{path}"]

    def close(self) -> None:
        """Stop listening."""
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[PageReceiver]:
    """A page receiver for one test."""
    r = PageReceiver()
    yield r
    r.close()


def registry_text(receiver: PageReceiver, smtp_port: int | None = None) -> str:
    """A small county: one station, two grids, three ponds, people with json:// pages."""
    mail = (f', "mailto://127.0.0.1:{smtp_port}?to=duty@example.com&from=pw@example.com'
            f'&mode=insecure"') if smtp_port else ""
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
     notify: ["{receiver.url('duty-quanjiang')}"{mail}]}}
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


def wait_for(cond: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll cond() until truthy (poll with timeout, never a blind sleep)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
