"""The server against the shipped Mosquitto config: TLS, its own account, per-node ACL."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.payloads import Event, encode
from server.broker import Mosquitto, free_port
from server.db import EventRow
from server.runner import Server
from tests.server.conftest import FakeNode, PageReceiver, make_config

SHIPPED = Path(__file__).resolve().parents[2] / "systemd" / "mosquitto"
PASSWORDS = {"heyuan-01": "pw-heyuan", "xiatang-01": "pw-xiatang",
             "pondwatch-server": "pw-server"}


def _certs(d: Path) -> None:
    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "server.key", "-out", "server.csr")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt")


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[Mosquitto]:
    d = tmp_path / "secure"
    d.mkdir()
    _certs(d)
    passwd = d / "pondwatch.passwd"
    for user, pw in PASSWORDS.items():
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if not passwd.exists() else []),
                        str(passwd), user, pw], check=True)
    port = free_port()
    conf = (SHIPPED / "pondwatch.conf").read_text()
    conf = (conf.replace("/etc/mosquitto/pondwatch.passwd", str(passwd))
                .replace("/etc/mosquitto/pondwatch.acl", str(SHIPPED / "pondwatch.acl"))
                .replace("/etc/mosquitto/certs/", f"{d}/")
                .replace("/var/lib/mosquitto/", f"{d}/")
                .replace("listener 8883", f"listener {port} 127.0.0.1"))
    with Mosquitto(port=port, data_dir=d, full_conf=conf) as broker:
        yield broker


def test_server_ingests_over_tls_with_its_account_and_refuses_spoofing(
        tmp_path: Path, receiver: PageReceiver, secure: Mosquitto, monkeypatch) -> None:
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
        with Server(cfg) as srv:
            assert not srv.services.ingest.connected.wait(2)
    finally:
        node.close()
        spoofer.close()
