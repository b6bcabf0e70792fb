"""The server's one MQTT client factory: paho callback API v2, MQTT v5, login, TLS, backoff."""

from __future__ import annotations

import logging
import os
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from server.core.config import MqttSettings

CLIENT_ID_ENV = "PONDWATCH_MQTT_CLIENT_ID"
USERNAME_ENV = "PONDWATCH_MQTT_USERNAME"
PASSWORD_ENV = "PONDWATCH_MQTT_PASSWORD"


def replica_username(mq: MqttSettings) -> str | None:
    """This replica's broker account: env PONDWATCH_MQTT_USERNAME, else mqtt.username (each
    replica has its own, `pondwatch-server-<name>`, made by systemd/mosquitto/add-node.sh)."""
    return os.environ.get(USERNAME_ENV) or mq.username


def replica_client_id(mq: MqttSettings) -> str:
    """This replica's client id: env PONDWATCH_MQTT_CLIENT_ID, else its broker user name (the
    shipped broker replaces every client id by the user name anyway), else mqtt.client_id.
    Each replica of a shared group needs its own."""
    return os.environ.get(CLIENT_ID_ENV) or replica_username(mq) or mq.client_id


def make_client(mq: MqttSettings, broker_url: str, client_id: str,
                login: tuple[str, str] | None = None, log_name: str = __name__) -> mqtt.Client:
    """A paho client, not yet connected: MQTT v5, the given id, paho's log under
    log_name, reconnects after 1-2 s, TLS for mqtts:// (mqtt.ca_file or the system CAs).

    login is (username, password) of the private broker; else the replica's user name
    (replica_username) with the password from env PONDWATCH_MQTT_PASSWORD; else anonymous."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.enable_logger(logging.getLogger(log_name))
    # One client per server: retrying every 2 s costs nothing and pages sooner.
    c.reconnect_delay_set(min_delay=1, max_delay=2)
    if login:
        c.username_pw_set(*login)
    elif user := replica_username(mq):
        c.username_pw_set(user, os.environ.get(PASSWORD_ENV))
    if urlparse(broker_url).scheme == "mqtts":
        c.tls_set(ca_certs=str(mq.ca_file) if mq.ca_file else None)
    return c


def connect_in_background(client: mqtt.Client, broker_url: str, session_expiry_s: int,
                          receive_maximum: int) -> None:
    """Connect (and keep reconnecting) on paho's own thread, resuming the broker session."""
    u = urlparse(broker_url)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = session_expiry_s
    props.ReceiveMaximum = receive_maximum
    port = u.port or (8883 if u.scheme == "mqtts" else 1883)
    client.connect_async(u.hostname or "127.0.0.1", port, keepalive=30, clean_start=False,
                         properties=props)
    client.loop_start()
