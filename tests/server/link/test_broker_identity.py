"""A node's password is only ever that node: with the shipped broker config and the private
broker, client ids are bound to user names, so a stolen node password connecting under the
server's client id or another node's cannot take over their sessions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol import Event, Topics, encode
from server.core.metrics import Metrics
from server.link.supervisor import BrokerSupervisor
from tests.support import SHIPPED_MOSQUITTO, shipped_secure_broker, wait_for

T = Topics()


class Client:
    """A bare MQTT v5 client: a persistent session or a clean one, optional TLS; it never
    reconnects on its own, so a session taken over stays visible."""

    def __init__(self, port: int, user: str, password: str, client_id: str,
                 ca: Path | None = None, clean: bool = True) -> None:
        """Connect and wait for the CONNACK (or the broker hanging up)."""
        self.connack: list[Any] = []
        self.session_present: list[bool] = []
        self.events: list[str] = []
        self.suback = threading.Event()
        self.disconnected = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5)
        if ca:
            self.c.tls_set(ca_certs=str(ca))
        self.c.username_pw_set(user, password)
        self.c.reconnect_delay_set(600, 600)
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda *_a: self.suback.set()
        self.c.on_message = lambda _c, _u, m: self.events.append(
            m.payload.decode(errors="replace"))
        self.c.on_disconnect = lambda *_a: self.disconnected.set()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0 if clean else 600
        self.c.connect("127.0.0.1", port, clean_start=clean, properties=props)
        self.c.loop_start()
        wait_for(lambda: self.connack or self.disconnected.is_set(), 5, "CONNACK")

    def _on_connect(self, _c: Any, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        self.session_present.append(bool(flags.session_present))
        self.connack.append(rc)

    @property
    def accepted(self) -> bool:
        """The broker accepted the connection."""
        return bool(self.connack) and not self.connack[-1].is_failure

    def publish_event(self, node_id: str, pond_id: str) -> str:
        """Publish an event of node_id (QoS 1, waits for the PUBACK); returns its id."""
        ev = Event.make("person_near_water", node_id, pond_id)
        self.c.publish(T.event(node_id), encode(ev), qos=1).wait_for_publish(5)
        return ev.id

    def close(self) -> None:
        """Disconnect (a persistent session stays on the broker)."""
        self.c.disconnect()
        self.c.loop_stop()


def _received(server: Client, event_id: str) -> Callable[[], bool]:
    return lambda: any(event_id in e for e in server.events)


def _stolen_password_cannot_displace_others(
        port: int, server_login: tuple[str, str, str], passwords: dict[str, str],
        ca: Path | None = None) -> None:
    """heyuan-01's password, tried under the server's and xiatang-01's client ids."""
    server_id, server_user, server_pw = server_login
    server = Client(port, server_user, server_pw, server_id, ca, clean=False)
    victim = Client(port, "xiatang-01", passwords["xiatang-01"], "xiatang-01", ca)
    thief: list[Client] = []
    try:
        assert server.accepted and victim.accepted
        server.c.subscribe(T.all_nodes("event"), qos=1)
        assert server.suback.wait(5)

        # Under the server's client id, with a clean start that would wipe its session.
        thief.append(Client(port, "heyuan-01", passwords["heyuan-01"], server_id, ca))
        seen = victim.publish_event("xiatang-01", "xiatang")
        wait_for(_received(server, seen), 5, "the server still receives after the attempt")
        assert not server.disconnected.is_set(), "the node's password took the server's id"

        # Under another node's client id.
        thief.append(Client(port, "heyuan-01", passwords["heyuan-01"], "xiatang-01", ca))
        seen = victim.publish_event("xiatang-01", "xiatang")
        wait_for(_received(server, seen), 5, "xiatang-01 still publishes")
        assert not victim.disconnected.is_set(), "the node's password kicked another node"

        # The server away: what it misses is queued in its session, and stays queued even
        # when the stolen password connects under its client id with a clean start.
        server.close()
        queued = victim.publish_event("xiatang-01", "xiatang")
        thief.append(Client(port, "heyuan-01", passwords["heyuan-01"], server_id, ca))
        assert not any(queued in e for e in thief[-1].events)
        back = Client(port, server_user, server_pw, server_id, ca, clean=False)
        try:
            assert back.accepted and back.session_present == [True], "session kept"
            wait_for(_received(back, queued), 5, "the message queued while away")
        finally:
            back.close()
    finally:
        for c in (*thief, victim, server):
            c.close()


def test_private_broker_binds_client_ids_to_users(tmp_path: Path) -> None:
    sup = BrokerSupervisor(tmp_path / "mq", Metrics())
    sup.start(["heyuan-01", "xiatang-01"])
    try:
        server_id, server_user, _ = sup.server_login
        assert server_user == server_id, "the server's user name is its client id"
        passwords = {n: sup.credentials.password(n) for n in ("heyuan-01", "xiatang-01")}
        _stolen_password_cannot_displace_others(sup.broker.port, sup.server_login, passwords)
    finally:
        sup.stop()


def test_shipped_broker_binds_client_ids_to_users(tmp_path: Path) -> None:
    passwords = {"heyuan-01": "pw-heyuan", "xiatang-01": "pw-xiatang",
                 "pondwatch-server": "pw-server"}
    with shipped_secure_broker(tmp_path / "secure", passwords) as broker:
        _stolen_password_cannot_displace_others(
            broker.port, ("pondwatch-server", "pondwatch-server", "pw-server"), passwords,
            broker.data_dir / "ca.crt")


def test_each_replica_has_its_own_account_on_the_shipped_broker(tmp_path: Path) -> None:
    """Two replicas, each with its own user (as `add-node.sh --server a|b` makes them), share
    the subscription and never displace each other, even with the same configured id."""
    passwords = {"heyuan-01": "pw-heyuan", "pondwatch-server-a": "pw-a",
                 "pondwatch-server-b": "pw-b"}
    broker = shipped_secure_broker(tmp_path / "secure", passwords)
    acl = tmp_path / "pondwatch.acl"
    acl.write_text((SHIPPED_MOSQUITTO / "pondwatch.acl").read_text() + "".join(
        f"\nuser pondwatch-server-{r}\ntopic readwrite pondwatch/v1/#\n" for r in "ab"))
    assert broker.full_conf is not None
    broker.full_conf = broker.full_conf.replace(str(SHIPPED_MOSQUITTO / "pondwatch.acl"),
                                                str(acl))
    ca = broker.data_dir / "ca.crt"
    with broker:
        replicas = [Client(broker.port, f"pondwatch-server-{r}", passwords[f"pondwatch-server-{r}"],
                           "pondwatch-server", ca, clean=False) for r in "ab"]
        node = Client(broker.port, "heyuan-01", passwords["heyuan-01"], "heyuan-01", ca)
        try:
            for r in replicas:
                assert r.accepted
                r.c.subscribe(f"$share/pondwatch/{T.all_nodes('event')}", qos=1)
                assert r.suback.wait(5)
            sent = [node.publish_event("heyuan-01", "heyuan-shantang") for _ in range(20)]
            wait_for(lambda: sum(len(r.events) for r in replicas) == 20, 10, "all events")
            assert all(r.events for r in replicas), "both replicas take a share"
            assert {i for r in replicas for e in r.events for i in sent if i in e} == set(sent)
            assert not any(r.disconnected.is_set() for r in replicas)
        finally:
            for c in (node, *replicas):
                c.close()
