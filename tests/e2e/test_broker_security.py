"""The shipped Mosquitto config: TLS, per-node passwords, ACL; no anonymous access."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import NodeConfig
from edge.link.mqtt import NodeLink
from edge.link.outbox import Outbox
from protocol import Event, Topics
from server.link.broker import Mosquitto
from tests.support import shipped_secure_broker

T = Topics()
PASSWORDS = {"heyuan-01": "pw-heyuan", "other-02": "pw-other", "pondwatch-server": "pw-server"}


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """Mosquitto started from the shipped config, with test certificates and passwords."""
    broker = shipped_secure_broker(tmp_path_factory.mktemp("secure-broker"), PASSWORDS)
    assert "pw-heyuan" not in (broker.data_dir / "pondwatch.passwd").read_text(), "hashed"
    with broker:
        yield broker


def _client(broker: Mosquitto, user: str | None, password: str | None,
            tls: bool = True) -> tuple[mqtt.Client, list[object]]:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{time.monotonic_ns()}",
                    protocol=mqtt.MQTTv5)
    if tls:
        c.tls_set(ca_certs=str(broker.data_dir / "ca.crt"))
    if user:
        c.username_pw_set(user, password)
    codes: list[object] = []
    c.on_connect = lambda _c, _u, _f, rc, _p: codes.append(rc)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    end = time.monotonic() + 5
    while not codes and time.monotonic() < end:
        time.sleep(0.02)
    return c, codes


def _cfg(broker: Mosquitto, tmp_path: Path, node: str, user: str) -> NodeConfig:
    return NodeConfig.model_validate({
        "node_id": node, "pond_id": "heyuan-shantang",
        "zones": {"water": [[0, 0.6], [1, 0.6], [1, 1], [0, 1]]},
        "mqtt": {"url": f"mqtts://127.0.0.1:{broker.port}", "username": user,
                 "password_file": str(tmp_path / f"{user}.pw"),
                 "ca_file": str(broker.data_dir / "ca.crt")},
        "outbox": str(tmp_path / f"{node}.db"),
    })


def test_anonymous_client_is_refused(secure: Mosquitto) -> None:
    c, codes = _client(secure, None, None)
    c.loop_stop()
    assert codes and codes[0].is_failure, "anonymous access must be refused"  # type: ignore[attr-defined]


def test_wrong_password_is_refused(secure: Mosquitto) -> None:
    c, codes = _client(secure, "heyuan-01", "wrong")
    c.loop_stop()
    assert codes and codes[0].is_failure  # type: ignore[attr-defined]


def test_plaintext_is_not_served(secure: Mosquitto) -> None:
    c, codes = _client(secure, "heyuan-01", PASSWORDS["heyuan-01"], tls=False)
    c.loop_stop()
    assert not c.is_connected() and not any(
        not rc.is_failure for rc in codes), "a plaintext MQTT session must not be possible"  # type: ignore[attr-defined]


def test_node_cannot_speak_for_another(secure: Mosquitto, tmp_path: Path) -> None:
    """heyuan-01's credentials publishing as other-02: refused (0x87), server sees nothing."""
    srv, codes = _client(secure, "pondwatch-server", PASSWORDS["pondwatch-server"])
    assert codes and not codes[0].is_failure  # type: ignore[attr-defined]
    seen: list[str] = []
    srv.on_message = lambda _c, _u, m: seen.append(m.topic)
    subscribed = threading.Event()
    srv.on_subscribe = lambda *a: subscribed.set()
    srv.subscribe(T.all_nodes("event"), qos=1)
    assert subscribed.wait(5)
    (tmp_path / "heyuan-01.pw").write_text(PASSWORDS["heyuan-01"])
    spoof = _cfg(secure, tmp_path, "other-02", "heyuan-01")
    box = Outbox(spoof.outbox)
    box.put(Event.make("sos", "other-02", "heyuan-shantang"))
    link = NodeLink(spoof, box)
    link.start()
    try:
        end = time.monotonic() + 10
        while link.refused == 0 and time.monotonic() < end:
            time.sleep(0.05)
        assert link.refused >= 1 and "0x87" in (link.last_error or "")
        assert box.depth() == 1, "a refused event is kept, not believed delivered"
        assert seen == []
    finally:
        link.stop()
    # the honest node gets through
    honest = _cfg(secure, tmp_path, "heyuan-01", "heyuan-01")
    box2 = Outbox(honest.outbox)
    box2.put(Event.make("sos", "heyuan-01", "heyuan-shantang"))
    link2 = NodeLink(honest, box2)
    link2.start()
    try:
        end = time.monotonic() + 10
        while not seen and time.monotonic() < end:
            time.sleep(0.05)
        assert seen == [T.event("heyuan-01")] and link2.refused == 0
    finally:
        link2.stop()
        srv.loop_stop()


def test_node_cannot_read_another_nodes_commands(secure: Mosquitto) -> None:
    node, codes = _client(secure, "heyuan-01", PASSWORDS["heyuan-01"])
    got: list[str] = []
    node.on_message = lambda _c, _u, m: got.append(m.topic)
    granted: list[object] = []
    done = threading.Event()

    def on_sub(_c: object, _u: object, _mid: int, rcs: list[object], _p: object) -> None:
        granted.extend(rcs)
        done.set()
    node.on_subscribe = on_sub
    node.subscribe([(T.cmd("other-02"), 1), (T.cmd("heyuan-01"), 1)])
    assert done.wait(5)
    srv, _ = _client(secure, "pondwatch-server", PASSWORDS["pondwatch-server"])
    srv.publish(T.cmd("other-02"), b"{}", qos=1).wait_for_publish(5)
    srv.publish(T.cmd("heyuan-01"), b"{}", qos=1).wait_for_publish(5)
    end = time.monotonic() + 5
    while T.cmd("heyuan-01") not in got and time.monotonic() < end:
        time.sleep(0.02)
    assert got == [T.cmd("heyuan-01")], got
    node.loop_stop()
    srv.loop_stop()
