"""Supervises the private loopback Mosquitto used when server.yaml names no broker.

The private broker is locked: no anonymous clients, generated passwords for the server and
every registered node (kept with mode 0600 in the broker's state folder), the per-node ACL of
the production broker, a message size limit just above the largest legitimate payload, and
client ids bound to user names (`use_username_as_clientid`): a node's password can only ever
be that node, never take over the server's session or another node's.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path

from protocol.limits import MAX_CMD_BYTES, MAX_EVENT_BYTES, MAX_HEALTH_BYTES, MAX_SNAPSHOT_BYTES
from protocol.topics import DEFAULT_PREFIX, check_node_id
from server.core.files import private_dir, write_private
from server.core.metrics import Metrics
from server.link.broker import BrokerError, Mosquitto, free_port

log = logging.getLogger(__name__)

SERVER_USER = "pondwatch-server"
# The largest payload on the wire is a snapshot; headroom for the MQTT v5 properties.
MESSAGE_SIZE_LIMIT = max(MAX_SNAPSHOT_BYTES, MAX_EVENT_BYTES, MAX_HEALTH_BYTES,
                         MAX_CMD_BYTES) + 4096
_HASH_ITERATIONS = 1000


def acl_text(prefix: str = DEFAULT_PREFIX, server_user: str = SERVER_USER) -> str:
    """The topic ACL: the server reads and writes the prefix, a node (%u) only its own topics."""
    node = f"{prefix}/node/%u"
    return "\n".join([
        f"user {server_user}", f"topic readwrite {prefix}/#", "",
        *(f"pattern write {node}/{kind}"
          for kind in ("status", "event", "snapshot/+", "health", "cmd/result")),
        f"pattern read {node}/cmd", f"pattern read {node}/ack", ""])


def password_line(user: str, password: str) -> str:
    """One mosquitto password-file line (PBKDF2-SHA512, the `$7$` format of Mosquitto 2)."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _HASH_ITERATIONS)
    return (f"{user}:$7${_HASH_ITERATIONS}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


class Credentials:
    """Generated broker passwords and the server's client id in <state>/credentials (0700)."""

    def __init__(self, state_dir: Path) -> None:
        """Create the folder; nothing is generated until asked for."""
        self.dir = private_dir(state_dir / "credentials")

    def _secret(self, name: str, make: str) -> str:
        """The stored value of name, generated once."""
        path = self.dir / name
        if path.exists():
            value = path.read_text(encoding="utf-8").strip()
            if value:
                os.chmod(path, 0o600)
                return value
        write_private(path, make + "\n")
        return make

    def password_file(self, user: str) -> Path:
        """Where a user's password is kept (a local node's mqtt.password_file points here)."""
        return self.dir / f"{user}.password"

    def password(self, user: str) -> str:
        """The user's broker password, generated on first use."""
        return self._secret(self.password_file(user).name, secrets.token_urlsafe(32))

    def client_id(self) -> str:
        """The server's MQTT client id, unique to this installation; also its broker user
        name, since the broker replaces every client id by the user name."""
        return self._secret("server.client-id", f"{SERVER_USER}-{secrets.token_hex(6)}")

    def write_broker_files(self, node_ids: Iterable[str], prefix: str) -> tuple[Path, Path]:
        """The hashed password file (server + nodes) and the ACL; returns their paths.

        Node ids go through check_node_id, so none can be a `pondwatch-*` server account."""
        server = self.client_id()
        users = [server, *sorted({check_node_id(n) for n in node_ids})]
        passwd, acl = self.dir / "mosquitto.passwd", self.dir / "mosquitto.acl"
        write_private(passwd, "".join(password_line(u, self.password(u)) + "\n" for u in users))
        write_private(acl, acl_text(prefix, server))
        return passwd, acl


class BrokerSupervisor:
    """Starts a locked private broker on a free loopback port and restarts it when it dies."""

    def __init__(self, data_dir: Path | None, metrics: Metrics, check_s: float = 1.0,
                 port: int | None = None, prefix: str = DEFAULT_PREFIX) -> None:
        """Pick the port and generate the server's credentials now, before start()."""
        self.broker = Mosquitto(port=port or free_port(), data_dir=data_dir, anonymous=False,
                                message_size_limit=MESSAGE_SIZE_LIMIT)
        self.credentials = Credentials(self.broker.data_dir)
        self.prefix = prefix
        self.metrics = metrics
        self.check_s = check_s
        self.node_ids: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """mqtt://127.0.0.1:PORT of the private broker."""
        return self.broker.url

    @property
    def server_login(self) -> tuple[str, str, str]:
        """(client id, username, password) the server connects with: its user name is its
        client id."""
        user = self.credentials.client_id()
        return user, user, self.credentials.password(user)

    def _lock(self) -> None:
        """(Re)write the password file and ACL and point the broker's config at them; the
        listener binds each client id to its user name."""
        passwd, acl = self.credentials.write_broker_files(self.node_ids, self.prefix)
        self.broker.conf_extra = (f"use_username_as_clientid true\n"
                                  f"password_file {passwd}\nacl_file {acl}\n")

    def start(self, node_ids: Iterable[str] = ()) -> None:
        """Start the broker with accounts for the server and node_ids, and the watchdog."""
        self.node_ids = list(node_ids)
        self._lock()
        self.broker.start()
        log.info("private broker %s: %d node account(s), passwords in %s", self.url,
                 len(self.node_ids), self.credentials.dir)
        self._thread = threading.Thread(target=self._watch, name="broker-watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        """Restart the broker on the same port whenever it is not alive."""
        while not self._stop.wait(self.check_s):
            if self.broker.alive:
                continue
            log.error("private mosquitto died; restarting on port %d", self.broker.port)
            try:
                self.broker.stop()
                self._lock()
                self.broker.start()
                self.metrics.broker_restarts.inc()
            except BrokerError as exc:
                log.error("mosquitto restart failed: %s", exc)

    def stop(self) -> None:
        """Stop the watchdog, then the broker."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.broker.stop(timeout=3.0)
        self.broker.close()
