"""The server against the shipped Mosquitto config: TLS, its own account, per-node ACL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.payloads import Event, encode
from server.core.db import EventRow
from server.link.broker import Mosquitto
from server.runner import Server
from tests.server.conftest import FakeNode, PageReceiver, make_config
from tests.support import shipped_secure_broker, wait_for

SHIPPED = Path(__file__).resolve().parents[3] / "systemd" / "mosquitto"
PASSWORDS = {"heyuan-01": "pw-heyuan", "xiatang-01": "pw-xiatang",
             "pondwatch-server": "pw-server"}


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[Mosquitto]:
    """The shipped TLS/ACL broker config with test certificates and passwords."""
    with shipped_secure_broker(tmp_path / "secure", PASSWORDS) as broker:
        yield broker


def test_server_ingests_over_tls_with_its_account_and_refuses_spoofing(
        tmp_path: Path, receiver: PageReceiver, secure: Mosquitto, monkeypatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PONDWATCH_MQTT_PASSWORD", "pw-server")
    ca = secure.data_dir / "ca.crt"
    cfg = make_config(tmp_path, receiver, f"mqtts://127.0.0.1:{secure.port}",
                      mqtt={"url": f"mqtts://127.0.0.1:{secure.port}",
                            "username": "pondwatch-server", "ca_file": str(ca)})
    node = FakeNode(secure, "heyuan-01", password="pw-heyuan", ca_file=ca)
    spoofer = FakeNode(secure, "xiatang-01", password="pw-xiatang", ca_file=ca)
    try:
        with Server(cfg) as srv:
            assert srv.services.ingest.connected.wait(10)
            ev = node.event("child_near_water")
            node.wait_acked({ev.id})  # the ack went out on heyuan-01's own ack topic
            # xiatang-01 publishing on heyuan-01's topic is dropped by the broker's ACL
            fake = Event.make("sos", "heyuan-01", "heyuan-shantang")
            spoofer.client.publish(spoofer.topics.event("heyuan-01"), encode(fake), qos=1)
            ok = spoofer.event("sos", pond_id="xiatang")
            spoofer.wait_acked({ok.id})
            with srv.services.sessions() as s:
                assert s.get(EventRow, fake.id) is None
                assert s.get(EventRow, ev.id) is not None
        monkeypatch.setenv("PONDWATCH_MQTT_PASSWORD", "wrong")
        with caplog.at_level(logging.WARNING, logger="server.link.ingest"), Server(cfg) as srv:
            wait_for(lambda: any("broker refused connection" in r.getMessage()
                                 for r in caplog.records), 10, "the broker's answer")
            assert not srv.services.ingest.connected.is_set()
    finally:
        node.close()
        spoofer.close()
