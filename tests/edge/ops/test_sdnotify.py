"""sd_notify over a real AF_UNIX datagram socket (path and abstract) and the watchdog gate."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.ops import sdnotify
from edge.ops.sdnotify import Watchdog, notify


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        name = str(tmp_path / "notify.sock")
        sock.bind(name)
    else:
        name = f"@pondwatch-test-{os.getpid()}-{id(sock)}"
        sock.bind("\0" + name[1:])
    sock.settimeout(2)
    yield name, sock
    sock.close()


def test_notify_reaches_the_socket(listener: tuple[str, socket.socket],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    name, sock = listener
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    assert sdnotify.ready("watching heyuan-shantang")
    assert sock.recv(256) == b"READY=1\nSTATUS=watching heyuan-shantang"
    assert sdnotify.stopping()
    assert sock.recv(256) == b"STOPPING=1"


def test_notify_without_systemd_or_with_a_dead_socket(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False
    assert notify("READY=1", socket_path=str(tmp_path / "nobody-listens")) is False
    assert notify("READY=1", socket_path="relative/path") is False


def test_watchdog_interval_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Watchdog().interval_s == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")         # meant for another process
    assert not Watchdog().enabled
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    monkeypatch.setenv("WATCHDOG_USEC", "soon")
    assert not Watchdog().enabled
    monkeypatch.delenv("WATCHDOG_USEC")
    assert Watchdog().ping_if(True) is False


def test_watchdog_pings_only_while_healthy_and_due(listener: tuple[str, socket.socket]) -> None:
    name, sock = listener
    t = [0.0]
    dog = Watchdog(10.0, clock=lambda: t[0], send=lambda s: notify(s, socket_path=name))
    assert dog.ping_if(True)
    assert sock.recv(64) == b"WATCHDOG=1"
    t[0] = 5.0
    assert not dog.ping_if(True)                     # not due yet
    t[0] = 11.0
    assert not dog.ping_if(False)                    # stuck camera: withheld
    assert dog.withheld == 1
    t[0] = 12.0
    assert dog.ping_if(True)
    assert sock.recv(64) == b"WATCHDOG=1"
    assert dog.pings == 2
