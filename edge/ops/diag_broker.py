"""Diag's broker check: connect with the node's credentials, echo a message via the broker."""

from __future__ import annotations

import logging
import secrets
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from edge.config import NodeConfig
from edge.link.client import broker_address, make_client
from protocol import Topics

log = logging.getLogger(__name__)

# A broker that refuses the echo topic by ACL still proves itself with an accepted heartbeat.
# To allow the full round trip: `pattern readwrite <prefix>/node/%u/diag/#` in the ACL.


class _Probe:
    """Callback state of one probe client; callbacks only record and signal."""

    def __init__(self) -> None:
        """Nothing seen yet."""
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.published = threading.Event()
        self.echoed = threading.Event()
        self.connect_rc: Any = None
        self.sub_rc: Any = None
        self.pub_rc: Any = None
        self.echo_at = 0.0

    def on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        """Record the CONNACK."""
        self.connect_rc = rc
        self.connected.set()

    def on_subscribe(self, _c: Any, _u: Any, _mid: int, rcs: list[Any], _p: Any) -> None:
        """Record the SUBACK."""
        self.sub_rc = rcs[0] if rcs else None
        self.subscribed.set()

    def on_publish(self, _c: Any, _u: Any, _mid: int, rc: Any, _p: Any) -> None:
        """Record the PUBACK."""
        self.pub_rc = rc
        self.published.set()

    def on_message(self, _c: Any, _u: Any, _msg: mqtt.MQTTMessage) -> None:
        """The echo came back."""
        self.echo_at = time.monotonic()
        self.echoed.set()


def _client(cfg: NodeConfig, probe: _Probe) -> mqtt.Client:
    """The node's kind of client (edge.link.client) with a client id of its own."""
    try:
        c = make_client(cfg, f"pondwatch-diag-{cfg.node_id}-{secrets.token_hex(3)}",
                        "edge.ops.diag_broker.paho")
    except OSError as exc:
        raise RuntimeError(f"cannot read the MQTT password: {exc}") from exc
    c.on_connect = probe.on_connect
    c.on_subscribe = probe.on_subscribe
    c.on_publish = probe.on_publish
    c.on_message = probe.on_message
    return c


def _failed(rc: Any) -> bool:
    """True for a v5 reason code that reports failure."""
    return bool(getattr(rc, "is_failure", False)) or (isinstance(rc, int) and rc >= 0x80)


def round_trip(cfg: NodeConfig, timeout_s: float = 8.0) -> str:
    """Detail of a successful probe; raise RuntimeError naming what failed."""
    host, port = broker_address(cfg)
    probe = _Probe()
    client = _client(cfg, probe)
    t0 = time.monotonic()
    try:
        client.connect(host, port, keepalive=max(10, int(timeout_s) + 5))
    except (OSError, ssl.SSLError) as exc:
        raise RuntimeError(f"cannot reach {host}:{port}: {exc}") from exc
    client.loop_start()
    try:
        if not probe.connected.wait(timeout_s):
            raise RuntimeError(f"no CONNACK from {host}:{port} within {timeout_s:.0f} s")
        if _failed(probe.connect_rc):
            raise RuntimeError(f"broker refused the connection: {probe.connect_rc}")
        connect_ms = (time.monotonic() - t0) * 1000
        topics = Topics(cfg.mqtt.topic_prefix)
        topic = f"{topics.node(cfg.node_id)}/diag/{secrets.token_hex(4)}"
        client.subscribe(topic, qos=1)
        if not probe.subscribed.wait(timeout_s):
            raise RuntimeError("no SUBACK")
        if not _failed(probe.sub_rc):
            t1 = time.monotonic()
            client.publish(topic, b"pondwatch diag", qos=1)
            if not probe.published.wait(timeout_s):
                raise RuntimeError("no PUBACK for the probe message")
            if not _failed(probe.pub_rc):
                if not probe.echoed.wait(timeout_s):
                    raise RuntimeError(f"message to {topic} did not come back in "
                                       f"{timeout_s:.0f} s")
                return (f"{host}:{port} connected in {connect_ms:.0f} ms, round trip "
                        f"{(probe.echo_at - t1) * 1000:.0f} ms")
        return _heartbeat_fallback(cfg, client, probe, topics, host, port, connect_ms, timeout_s)
    finally:
        client.disconnect()
        client.loop_stop()


def _heartbeat_fallback(cfg: NodeConfig, client: mqtt.Client, probe: _Probe, topics: Topics,
                        host: str, port: int, connect_ms: float, timeout_s: float) -> str:
    """The ACL refused the echo topic: a heartbeat the broker accepts (PUBACK) proves the link."""
    from edge.ops.heartbeat import HealthCollector
    from protocol import encode
    probe.published.clear()
    probe.pub_rc = None
    hb = HealthCollector(cfg, "", "").collect({"diag": True})
    t1 = time.monotonic()
    client.publish(topics.health(cfg.node_id), encode(hb), qos=1)
    if not probe.published.wait(timeout_s):
        raise RuntimeError("no PUBACK for a heartbeat")
    if _failed(probe.pub_rc):
        raise RuntimeError(f"broker refused the node's heartbeat: {probe.pub_rc}")
    return (f"{host}:{port} connected in {connect_ms:.0f} ms, heartbeat accepted in "
            f"{(time.monotonic() - t1) * 1000:.0f} ms (echo topic not permitted by the ACL)")
