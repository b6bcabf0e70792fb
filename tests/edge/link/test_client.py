"""The node's one MQTT client factory: v5, login from the credential, broker address."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge.config import NodeConfig
from edge.link.client import broker_address, make_client


def test_login_defaults_to_the_node_id_when_a_password_is_set(
        make_cfg: Callable[..., NodeConfig], tmp_path: Path) -> None:
    """A password file gives the login node-id / password; the client speaks MQTT v5."""
    (tmp_path / "pw").write_text("s3cret\n")
    cfg = make_cfg(mqtt={"password_file": str(tmp_path / "pw")})
    c = make_client(cfg, "cid", "test.paho")
    assert c.protocol == mqtt.MQTTv5
    assert (c.username, c.password) == ("test-01", "s3cret")
    assert c.logger is logging.getLogger("test.paho")


def test_no_password_no_login(make_cfg: Callable[..., NodeConfig],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a password (and no username) the client connects anonymously."""
    monkeypatch.delenv("PONDWATCH_MQTT_PASSWORD", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert make_client(make_cfg(), "cid").username is None


def test_clear_text_login_to_a_remote_broker_is_warned(
        make_cfg: Callable[..., NodeConfig], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A password sent over mqtt:// to another host is logged as a warning."""
    monkeypatch.setenv("PONDWATCH_MQTT_PASSWORD", "pw")
    with caplog.at_level(logging.WARNING, logger="edge.link.client"):
        make_client(make_cfg(mqtt={"url": "mqtt://broker.example:1883"}), "cid")
    assert "not TLS" in caplog.text


def test_unreadable_password_file_is_an_os_error(make_cfg: Callable[..., NodeConfig],
                                                 tmp_path: Path) -> None:
    """A missing credential file is not silently an anonymous login."""
    with pytest.raises(OSError):
        make_client(make_cfg(mqtt={"password_file": str(tmp_path / "none")}), "cid")


@pytest.mark.parametrize(("url", "address"), [
    ("mqtt://10.0.0.5", ("10.0.0.5", 1883)),
    ("mqtts://pw.county", ("pw.county", 8883)),
    ("mqtts://pw.county:9883", ("pw.county", 9883)),
])
def test_broker_address(make_cfg: Callable[..., NodeConfig], url: str,
                        address: tuple[str, int]) -> None:
    """The URL's port, else the scheme's."""
    assert broker_address(make_cfg(mqtt={"url": url})) == address
