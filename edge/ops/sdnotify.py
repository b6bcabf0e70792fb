"""systemd notification protocol: READY/STATUS/STOPPING and a watchdog pinged only while healthy."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def notify(state: str, *, socket_path: str | None = None) -> bool:
    """Send state (e.g. "READY=1") to NOTIFY_SOCKET; False when not under systemd or on error."""
    addr = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET", "")
    if not addr:
        return False
    if addr[0] == "@":                    # abstract namespace
        addr = "\0" + addr[1:]
    elif addr[0] != "/":
        log.warning("NOTIFY_SOCKET %r is neither a path nor abstract", addr)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("sd_notify %s failed: %s", state.split("=", 1)[0], exc)
        return False
    return True


def ready(status: str = "running") -> bool:
    """Tell systemd the service is up (Type=notify)."""
    return notify(f"READY=1\nSTATUS={status}")


def status(text: str) -> bool:
    """Show text in `systemctl status`."""
    return notify(f"STATUS={text}")


def stopping() -> bool:
    """Tell systemd a clean shutdown has begun."""
    return notify("STOPPING=1")


def watchdog_interval_s() -> float | None:
    """Half the WatchdogSec systemd gave this process, or None without a watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        return max(int(usec) / 1e6 / 2, 0.5)
    except ValueError:
        log.warning("WATCHDOG_USEC %r is not a number", usec)
        return None


class Watchdog:
    """Pings the systemd watchdog at most every interval_s, and only while the node is healthy."""

    def __init__(self, interval_s: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 send: Callable[[str], bool] = notify) -> None:
        """interval_s None: half of WATCHDOG_USEC; no watchdog configured: every ping is a no-op."""
        self.interval_s = interval_s if interval_s is not None else watchdog_interval_s()
        self._clock = clock
        self._send = send
        self._last: float | None = None
        self.pings = 0
        self.withheld = 0

    @property
    def enabled(self) -> bool:
        """True when systemd watches this process."""
        return self.interval_s is not None

    def ping_if(self, healthy: bool) -> bool:
        """Ping when healthy and due; a stuck node stops pinging and systemd restarts it."""
        if self.interval_s is None:
            return False
        if not healthy:
            self.withheld += 1
            if self.withheld == 1 or self.withheld % 100 == 0:
                log.warning("watchdog ping withheld: node unhealthy (%d times)", self.withheld)
            return False
        self.withheld = 0
        now = self._clock()
        if self._last is not None and now - self._last < self.interval_s:
            return False
        if self._send("WATCHDOG=1"):
            self._last = now
            self.pings += 1
            return True
        return False
