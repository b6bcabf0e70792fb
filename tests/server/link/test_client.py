"""The server's MQTT client factory: v5, who it logs in as, and a resumed session."""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from server.core.config import MqttSettings
from server.link.broker import Mosquitto
from server.link.client import connect_in_background, make_client, replica_client_id


def test_login_wins_over_the_configured_account(monkeypatch: pytest.MonkeyPatch) -> None:
    """The private broker's login first, else mqtt.username with the env password, else none."""
    monkeypatch.setenv("PONDWATCH_MQTT_PASSWORD", "from-env")
    mq = MqttSettings(username="pondwatch-server")
    c = make_client(mq, "mqtt://127.0.0.1:1883", "id-1", login=("private", "generated"))
    assert c.protocol == mqtt.MQTTv5
    assert (c.username, c.password) == ("private", "generated")
    c = make_client(mq, "mqtt://127.0.0.1:1883", "id-1")
    assert (c.username, c.password) == ("pondwatch-server", "from-env")
    assert make_client(MqttSettings(), "mqtt://127.0.0.1:1883", "id-1").username is None


def test_replica_client_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """env PONDWATCH_MQTT_CLIENT_ID names the replica; else the config's id."""
    monkeypatch.delenv("PONDWATCH_MQTT_CLIENT_ID", raising=False)
    assert replica_client_id(MqttSettings(client_id="cfg-id")) == "cfg-id"
    monkeypatch.setenv("PONDWATCH_MQTT_CLIENT_ID", "pondwatch-server-host2")
    assert replica_client_id(MqttSettings(client_id="cfg-id")) == "pondwatch-server-host2"


def test_each_replica_logs_in_as_its_own_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """env PONDWATCH_MQTT_USERNAME names the replica's broker account; its client id follows
    it (a broker with use_username_as_clientid uses the user name as the id anyway)."""
    monkeypatch.delenv("PONDWATCH_MQTT_CLIENT_ID", raising=False)
    monkeypatch.setenv("PONDWATCH_MQTT_PASSWORD", "pw-b")
    monkeypatch.setenv("PONDWATCH_MQTT_USERNAME", "pondwatch-server-b")
    mq = MqttSettings(username="pondwatch-server", client_id="cfg-id")
    assert replica_client_id(mq) == "pondwatch-server-b"
    c = make_client(mq, "mqtt://127.0.0.1:1883", replica_client_id(mq))
    assert (c.username, c.password) == ("pondwatch-server-b", "pw-b")
    monkeypatch.delenv("PONDWATCH_MQTT_USERNAME")
    assert replica_client_id(mq) == "pondwatch-server"


def test_second_connect_resumes_the_broker_session(mosquitto: Mosquitto) -> None:
    """connect_in_background keeps the session: the broker says so on the second connect."""
    present: list[bool] = []
    got = threading.Event()

    def on_connect(_c: mqtt.Client, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        present.append(bool(flags.session_present) and not rc.is_failure)
        got.set()

    for _ in range(2):
        got.clear()
        c = make_client(MqttSettings(), mosquitto.url, "factory-test")
        c.on_connect = on_connect
        connect_in_background(c, mosquitto.url, session_expiry_s=60, receive_maximum=10)
        try:
            assert got.wait(10)
        finally:
            c.disconnect()
            c.loop_stop()
    assert present == [False, True]
