"""Helpers shared by the test folders: polling with a timeout, the one fake clock, the shipped
secure broker."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from server.link.broker import Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_MOSQUITTO = ROOT / "systemd" / "mosquitto"


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll cond() until truthy and return it (a poll with a timeout, never a blind sleep)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class FakeClock:
    """The one fake clock of the tests: moves only when a test moves it. The server's code asks
    it `now()` (aware UTC, as server.core.clock.Clock); the node's code calls it for epoch
    seconds (as `time.time`); tests move it with `advance`, `set` or by assigning `t`."""

    def __init__(self, start: datetime | float | None = None) -> None:
        """Start at an aware time or epoch seconds (default 2026-07-01 08:00 UTC)."""
        if isinstance(start, int | float):
            start = datetime.fromtimestamp(start, UTC)
        self._now = start or datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The current fake time."""
        with self._lock:
            return self._now

    def __call__(self) -> float:
        """The current fake time in epoch seconds."""
        return self.now().timestamp()

    @property
    def t(self) -> float:
        """The current fake time in epoch seconds."""
        return self()

    @t.setter
    def t(self, seconds: float) -> None:
        """Jump to an absolute time in epoch seconds."""
        self.set(datetime.fromtimestamp(seconds, UTC))

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward and return the new time."""
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to an absolute aware time."""
        with self._lock:
            self._now = when


def make_test_certs(d: Path) -> None:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost in d."""
    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "server.key", "-out", "server.csr")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt")


def shipped_secure_broker(d: Path, passwords: dict[str, str]) -> Mosquitto:
    """Mosquitto (not started) from the shipped TLS/ACL config, with test certs and passwords."""
    d.mkdir(parents=True, exist_ok=True)
    make_test_certs(d)
    passwd = d / "pondwatch.passwd"
    for user, pw in passwords.items():
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if not passwd.exists() else []),
                        str(passwd), user, pw], check=True)
    port = free_port()
    conf = (SHIPPED_MOSQUITTO / "pondwatch.conf").read_text()
    conf = (conf.replace("/etc/mosquitto/pondwatch.passwd", str(passwd))
                .replace("/etc/mosquitto/pondwatch.acl", str(SHIPPED_MOSQUITTO / "pondwatch.acl"))
                .replace("/etc/mosquitto/certs/", f"{d}/")
                .replace("/var/lib/mosquitto/", f"{d}/")
                .replace("listener 8883", f"listener {port} 127.0.0.1"))
    assert "allow_anonymous false" in conf
    return Mosquitto(port=port, data_dir=d, full_conf=conf)
