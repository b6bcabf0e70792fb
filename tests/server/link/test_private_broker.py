"""The private broker is locked: no anonymous access, generated passwords, an ACL, a size
limit just above the largest payload, and a server client id unique to the installation."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import NodeConfig
from edge.link.mqtt import NodeLink
from edge.link.outbox import Outbox
from protocol import Event, Topics, encode
from protocol.limits import MAX_SNAPSHOT_BYTES
from scripts.page_receiver import PageReceiver
from server.link.supervisor import MESSAGE_SIZE_LIMIT, acl_text
from server.runner import Server
from tests.server.conftest import FakeNode, make_config
from tests.support import SHIPPED_MOSQUITTO, wait_for

T = Topics()


class Probe:
    """A bare MQTT v5 client that records connect, subscribe and publish results."""

    def __init__(self, port: int, user: str | None, password: str | None,
                 client_id: str | None = None) -> None:
        """Connect and wait for the CONNACK (or the broker closing the socket)."""
        self.connack: list[Any] = []
        self.suback: list[Any] = []
        self.puback: dict[int, Any] = {}
        self.messages: list[str] = []
        self.disconnected = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2,
                             client_id=client_id or f"probe-{time.monotonic_ns()}",
                             protocol=mqtt.MQTTv5)
        if user:
            self.c.username_pw_set(user, password)
        self.c.on_connect = lambda _c, _u, _f, rc, _p: self.connack.append(rc)
        self.c.on_subscribe = lambda _c, _u, _m, codes, _p: self.suback.extend(codes)
        self.c.on_publish = lambda _c, _u, mid, rc, _p: self.puback.__setitem__(mid, rc)
        self.c.on_message = lambda _c, _u, m: self.messages.append(m.topic)
        self.c.on_disconnect = lambda *_a: self.disconnected.set()
        self.c.reconnect_delay_set(60, 60)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        wait_for(lambda: self.connack or self.disconnected.is_set(), 5, "CONNACK")

    @property
    def accepted(self) -> bool:
        """The broker accepted the connection."""
        return bool(self.connack) and not self.connack[0].is_failure

    def publish(self, topic: str, payload: bytes) -> Any:
        """Publish QoS 1 and return the PUBACK reason code (None: the broker hung up)."""
        info = self.c.publish(topic, payload, qos=1)
        wait_for(lambda: info.mid in self.puback or self.disconnected.is_set(), 5, "PUBACK")
        return self.puback.get(info.mid)

    def close(self) -> None:
        """Disconnect."""
        self.c.disconnect()
        self.c.loop_stop()


def test_private_broker_refuses_anonymous_and_enforces_the_acl(
        tmp_path: Path, receiver: PageReceiver) -> None:
    with Server(make_config(tmp_path, receiver, None)) as srv:
        sup = srv.services.supervisor
        assert sup is not None and srv.services.ingest is not None
        assert srv.services.ingest.connected.wait(10)
        port, creds = sup.broker.port, sup.credentials
        anon = Probe(port, None, None)
        assert not anon.accepted, "anonymous access must be refused"
        anon.close()
        wrong = Probe(port, "heyuan-01", "not-the-password")
        assert not wrong.accepted
        wrong.close()
        forged = Probe(port, creds.client_id(), creds.password("heyuan-01"))
        assert not forged.accepted, "a node's password is not the server's"
        forged.close()

        node = Probe(port, "heyuan-01", creds.password("heyuan-01"))
        assert node.accepted
        node.c.subscribe([(T.all_nodes("snapshot/+"), 1), (T.cmd("xiatang-01"), 1),
                          (T.cmd("heyuan-01"), 1), (T.ack("heyuan-01"), 1)])
        wait_for(lambda: len(node.suback) == 4, 5, "SUBACK")
        # Mosquitto grants the subscriptions but the ACL delivers only permitted topics.
        other = FakeNode(sup.broker, "xiatang-01", password=creds.password("xiatang-01"))
        try:
            spoof = Event.make("person_submerged", "xiatang-01", "xiatang")
            assert node.publish(T.event("xiatang-01"), encode(spoof)).value == 0x87
            ev = other.event("child_near_water", pond_id="xiatang")
            other.wait_acked({ev.id})
            other.publish(T.snapshot("xiatang-01", ev.id), b"\xff\xd8" + b"\x00" * 1000)
            own = Event.make("person_in_water", "heyuan-01", "heyuan-shantang")
            assert node.publish(T.event("heyuan-01"), encode(own)).value == 0
            with srv.services.sessions() as s:
                from server.core.db import EventRow
                wait_for(lambda: s.get(EventRow, own.id) is not None, 10, "own event stored")
                assert s.get(EventRow, spoof.id) is None, "a forged event is never stored"
            # The server's ack of the own event passes the broker after the other's snapshot
            # was PUBACKed: once the ack is here, a wrongly forwarded snapshot would be too.
            wait_for(lambda: T.ack("heyuan-01") in node.messages, 10, "the own event's ack")
            assert not any("xiatang-01" in t for t in node.messages), node.messages
        finally:
            other.close()
            node.close()


def test_message_size_limit_is_just_above_the_largest_payload(
        tmp_path: Path, receiver: PageReceiver) -> None:
    assert MAX_SNAPSHOT_BYTES < MESSAGE_SIZE_LIMIT <= MAX_SNAPSHOT_BYTES + 8192
    with Server(make_config(tmp_path, receiver, None)) as srv:
        sup = srv.services.supervisor
        assert sup is not None
        assert f"message_size_limit {MESSAGE_SIZE_LIMIT}" in (
            sup.broker.data_dir / "mosquitto.conf").read_text()
        node = Probe(sup.broker.port, "heyuan-01", sup.credentials.password("heyuan-01"))
        jpeg = b"\xff\xd8" + b"\x00" * (MAX_SNAPSHOT_BYTES - 2)
        assert node.publish(T.snapshot("heyuan-01", "biggest"), jpeg).value == 0
        rc = node.publish(T.snapshot("heyuan-01", "toolarge"), b"\xff\xd8" + b"\x00" * 11_000_000)
        assert rc is None or rc.is_failure, "an 11 MB message must not be accepted"
        node.close()


def test_credentials_are_private_and_the_client_id_unique_per_installation(
        tmp_path: Path, receiver: PageReceiver) -> None:
    ids = []
    for install in ("a", "a", "b"):
        d = tmp_path / install
        d.mkdir(exist_ok=True)
        with Server(make_config(d, receiver, None)) as srv:
            sup, ingest = srv.services.supervisor, srv.services.ingest
            assert sup is not None and ingest is not None and ingest.connected.wait(10)
            ids.append(ingest.client_id)
            folder = sup.credentials.dir
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            files = list(folder.iterdir())
            server_user = sup.credentials.client_id()  # the broker binds ids to users
            assert {f.name for f in files} >= {f"{server_user}.password", "heyuan-01.password",
                                              "server.client-id", "mosquitto.passwd",
                                              "mosquitto.acl"}
            for f in files:
                assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
            assert sup.credentials.password(server_user) not in (
                folder / "mosquitto.passwd").read_text(), "hashed, not plain"
            assert f"user {server_user}\n" in (folder / "mosquitto.acl").read_text()
    assert ids[0] == ids[1], "same installation, same session"
    assert ids[0] != ids[2] and all(i.startswith("pondwatch-server-") for i in ids)
    assert "pondwatch-server" not in ids


def test_the_local_node_uses_its_generated_password(tmp_path: Path,
                                                    receiver: PageReceiver) -> None:
    with Server(make_config(tmp_path, receiver, None)) as srv:
        sup = srv.services.supervisor
        assert sup is not None
        cfg = NodeConfig.model_validate({
            "node_id": "heyuan-01", "pond_id": "heyuan-shantang",
            "zones": {"water": [[0, 0.6], [1, 0.6], [1, 1], [0, 1]]},
            "mqtt": {"url": sup.url,
                     "password_file": str(sup.credentials.password_file("heyuan-01"))},
            "outbox": str(tmp_path / "outbox.db")})
        box = Outbox(cfg.outbox)
        link = NodeLink(cfg, box)
        link.start()
        try:
            assert link.connected.wait(10)
            box.put(Event.make("child_near_water", "heyuan-01", "heyuan-shantang"))
            link.wake()
            wait_for(lambda: box.depth() == 0, 10, "the server to confirm the event")
            receiver.wait(1)
        finally:
            link.stop()


def test_shipped_acl_matches_the_private_one() -> None:
    shipped = [ln for ln in (SHIPPED_MOSQUITTO / "pondwatch.acl").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]
    assert shipped == [ln for ln in acl_text().splitlines() if ln.strip()]
