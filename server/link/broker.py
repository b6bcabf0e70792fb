"""A private Mosquitto broker on a loopback port, for single-machine set-ups and tests."""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from server.core.errors import ServerError

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: the child only calls it


def _die_with_parent(parent: int) -> None:
    """In the forked child: get SIGTERM when the parent dies, even by SIGKILL (Linux)."""
    if _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        os._exit(120)
    if os.getppid() != parent:  # the parent died between fork and prctl
        os._exit(121)


class BrokerError(ServerError, RuntimeError):
    """Mosquitto could not be found or did not start."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on host right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def find_mosquitto() -> str:
    """Path of the mosquitto binary, or BrokerError with the install hint."""
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise BrokerError("mosquitto not found: install the Debian package 'mosquitto'")


class Mosquitto:
    """One supervised mosquitto process listening on 127.0.0.1 only."""

    def __init__(self, port: int | None = None, conf_extra: str = "",
                 data_dir: Path | None = None, anonymous: bool = True,
                 full_conf: str | None = None, message_size_limit: int = 11_000_000) -> None:
        """Prepare (not start) a broker; conf_extra is appended, full_conf replaces the default.

        The process dies with its parent (PR_SET_PDEATHSIG), so a killed server or test
        never leaves it behind."""
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="pondwatch-mosquitto-"))
        self.conf_extra = conf_extra
        self.anonymous = anonymous
        self.full_conf = full_conf
        self.message_size_limit = message_size_limit
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """mqtt:// URL of the listener."""
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        """Where mosquitto writes its log."""
        return self.data_dir / "mosquitto.log"

    def _write_conf(self) -> Path:
        """Write mosquitto.conf for this broker and return its path."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "mosquitto.conf"
        if self.full_conf is not None:
            head = "user root\n" if os.geteuid() == 0 else ""
            conf.write_text(head + self.full_conf + "\n")
            return conf
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if self.anonymous else 'false'}",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 100000",
            f"message_size_limit {self.message_size_limit}",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n" + self.conf_extra + "\n")
        return conf

    def start(self, timeout: float = 10.0) -> Mosquitto:
        """Start mosquitto and wait until it accepts TCP connections."""
        if self.alive:
            return self
        conf = self._write_conf()
        parent = os.getpid()
        self._proc = subprocess.Popen([find_mosquitto(), "-c", str(conf)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      preexec_fn=lambda: _die_with_parent(parent))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise BrokerError(f"mosquitto exited with {self._proc.returncode}: {err.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    log.info("mosquitto listening on 127.0.0.1:%d", self.port)
                    return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise BrokerError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    @property
    def pid(self) -> int | None:
        """The running process id, if any."""
        return self._proc.pid if self.alive and self._proc is not None else None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop gracefully (SIGTERM), killing after timeout; safe to call twice."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL the broker (no persistence written); safe to call twice."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self.stop()

    def wipe(self) -> None:
        """Delete persisted state so the next start comes back empty."""
        for f in self.data_dir.glob("*.db"):
            f.unlink()

    def close(self) -> None:
        """Stop and remove a temporary data folder."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        """Start the broker."""
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Stop the broker and remove a temporary data folder."""
        self.close()
