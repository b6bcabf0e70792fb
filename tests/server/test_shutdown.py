"""`pondwatch-server run` as a real process: SIGTERM/SIGINT stop it cleanly (exit 0), and
its private broker never outlives it, not even a SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from protocol.topics import Topics
from scripts.page_receiver import PageReceiver
from server.link.broker import free_port
from tests.server.conftest import SECRET, registry_text
from tests.support import ROOT, wait_for

T = Topics()


class Run:
    """One `python -m server.cli run server.yaml` with a private broker."""

    def __init__(self, d: Path, receiver: PageReceiver) -> None:
        """Write the config (no broker URL: the server starts its own)."""
        reg = d / "registry.yaml"
        reg.write_text(registry_text(receiver), encoding="utf-8")
        self.port = free_port()
        self.cfg = d / "server.yaml"
        self.cfg.write_text(f"environment: dev\nsecret_key: {SECRET}\n"
                            f"database: sqlite:///{d / 'server.db'}\n"
                            f"http: {{bind: '127.0.0.1:{self.port}', "
                            f"public_url: 'http://127.0.0.1:{self.port}'}}\n"
                            f"registry: {reg}\n", encoding="utf-8")
        self.db, self.state = d / "server.db", d / "mosquitto"
        self.log = (d / "server.log").open("wb")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, "-m", "server.cli", "run", str(self.cfg)],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=self.log)
        wait_for(self._connected, 30, "server connected to its private broker")
        kids = psutil.Process(self.proc.pid).children(recursive=True)
        [self.broker] = [k for k in kids if k.name() == "mosquitto"]

    def _connected(self) -> bool:
        """healthz says the MQTT session is up."""
        assert self.proc.poll() is None, "server exited early"
        try:
            r = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
            return bool(r.json()["mqtt_connected"])
        except httpx.HTTPError:
            return False

    def gone(self, p: psutil.Process) -> bool:
        """The process no longer runs (reaped, or a zombie nobody waits for)."""
        try:
            return p.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    def close(self) -> None:
        """Never leave anything behind, whatever the test did."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if not self.gone(self.broker):
            self.broker.kill()
        self.log.close()


@pytest.fixture
def run(tmp_path: Path, receiver: PageReceiver) -> Iterator[Run]:
    """A running server process."""
    r = Run(tmp_path, receiver)
    yield r
    r.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_server_and_broker_with_exit_0(run: Run, sig: signal.Signals) -> None:
    run.proc.send_signal(sig)
    code = run.proc.wait(30)  # systemd's TimeoutStopSec; only a hang guard here
    assert code == 0, (run.cfg.parent / "server.log").read_text()[-2000:]
    wait_for(lambda: run.gone(run.broker), 15, "the private broker to stop with the server")
    assert not (run.state / "mosquitto.db.new").exists()
    assert (run.state / "mosquitto.db").exists(), "the broker saved its sessions on the way"
    assert "stopped in" in (run.cfg.parent / "server.log").read_text()


def test_sigkill_takes_the_private_broker_down_too(run: Run) -> None:
    run.proc.send_signal(signal.SIGKILL)
    run.proc.wait(10)
    wait_for(lambda: run.gone(run.broker), 5, "the orphaned broker to die (PR_SET_PDEATHSIG)")


def test_sigterm_finishes_the_page_being_sent(tmp_path: Path) -> None:
    slow = PageReceiver(delay_s=2.0)  # the constable's gateway answers slowly
    run = Run(tmp_path, slow)
    try:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from protocol.payloads import Event, encode

        password = (run.state / "credentials" / "heyuan-01.password").read_text().strip()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t-heyuan", protocol=mqtt.MQTTv5)
        c.username_pw_set("heyuan-01", password)
        c.connect("127.0.0.1", int(_broker_port(run)))
        c.loop_start()
        ev = Event.make("child_near_water", "heyuan-01", "heyuan-shantang")
        c.publish(T.event("heyuan-01"), encode(ev), qos=1).wait_for_publish(5)
        c.disconnect()
        c.loop_stop()

        def status() -> str | None:
            with sqlite3.connect(run.db, timeout=5) as con:
                row = con.execute("select status from deliveries").fetchone()
            return row[0] if row else None
        wait_for(lambda: status() == "sending", 10, "the page to be in flight")
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(10) == 0
        assert status() == "sent", "the page in flight was finished and recorded"
        assert len(slow.pages) == 1
    finally:
        run.close()
        slow.close()


def _broker_port(run: Run) -> int:
    """The private broker's port, from its generated config."""
    conf = (run.state / "mosquitto.conf").read_text()
    return int(next(ln.split()[1] for ln in conf.splitlines() if ln.startswith("listener")))
