"""The node's one MQTT client factory: paho callback API v2, MQTT v5, TLS, login, backoff."""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import NodeConfig

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30  # backoff cap (the link's own wait too, while nothing critical waits)
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def mqtt_password(cfg: NodeConfig) -> str | None:
    """The node's broker password from a credential file or the environment."""
    if cfg.mqtt.password_file:
        return Path(cfg.mqtt.password_file).read_text(encoding="utf-8").strip()
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / "mqtt-password").exists():
        return (Path(cred_dir) / "mqtt-password").read_text(encoding="utf-8").strip()
    return os.environ.get(cfg.mqtt.password_env)


def broker_address(cfg: NodeConfig) -> tuple[str, int]:
    """Host and port of mqtt.url (1883, or 8883 for mqtts, when the URL names no port)."""
    url = urlparse(cfg.mqtt.url)
    return url.hostname or "127.0.0.1", url.port or (8883 if url.scheme == "mqtts" else 1883)


class NodeClient(mqtt.Client):
    """paho's client whose owner may decide the reconnect wait (wait_hook), so a critical
    event raised during a long backoff can cut it short."""

    wait_hook: Callable[[Callable[[], bool]], None] | None = None

    def _reconnect_wait(self) -> None:
        """Wait as the owner says, stopping early when the loop is asked to end."""
        if self.wait_hook is None:
            super()._reconnect_wait()
            return
        self.wait_hook(lambda: bool(self._thread_terminate))


def make_client(cfg: NodeConfig, client_id: str, log_name: str = __name__) -> NodeClient:
    """A paho client, not yet connected: MQTT v5, paho's log under log_name, TLS for
    mqtts:// (mqtt.ca_file or the system CAs), the node's login, reconnects backing off
    from 1 s to RECONNECT_MAX_S. OSError when the password file cannot be read."""
    c = NodeClient(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.enable_logger(logging.getLogger(log_name))
    c.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
    url = urlparse(cfg.mqtt.url)
    if url.scheme == "mqtts":
        c.tls_set(ca_certs=cfg.mqtt.ca_file, cert_reqs=ssl.CERT_REQUIRED)
    password = mqtt_password(cfg)
    user = cfg.mqtt.username or (cfg.node_id if password else None)
    if user:
        c.username_pw_set(user, password)
        if url.scheme == "mqtt" and url.hostname not in LOOPBACK:
            log.warning("mqtt.url %s is not TLS: the password and events travel in clear; "
                        "use mqtts:// in production", cfg.mqtt.url)
    return c
