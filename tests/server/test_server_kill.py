"""`pondwatch-server run` killed with SIGKILL mid-ingest: nothing lost, nothing duplicated."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from protocol.payloads import Event, encode
from server.link.broker import Mosquitto, free_port
from tests.server.conftest import SECRET, FakeNode, PageReceiver, registry_text, wait_for

ROOT = Path(__file__).resolve().parents[2]
N = 300


def _count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=5) as c:
        try:
            return int(c.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:
            return 0


class ServerProcess:
    """`python -m server.cli run server.yaml` as a child process."""

    def __init__(self, cfg: Path, port: int) -> None:
        self.cfg, self.url = cfg, f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, "-m", "server.cli", "run", str(self.cfg)],
                                     cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def connected() -> bool:
            try:
                return bool(httpx.get(self.url + "/healthz", timeout=1).json()["mqtt_connected"])
            except httpx.HTTPError:
                return False
        wait_for(connected, 30, "server connected to broker")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def setup(tmp_path: Path, receiver: PageReceiver) -> Iterator[tuple[ServerProcess, Mosquitto,
                                                                   Path]]:
    reg = tmp_path / "registry.yaml"
    reg.write_text(registry_text(receiver), encoding="utf-8")
    port = free_port()
    with Mosquitto(data_dir=tmp_path / "mq") as broker:
        cfg = tmp_path / "server.yaml"
        cfg.write_text(f"environment: dev\nsecret_key: {SECRET}\n"
                       f"database: sqlite:///{tmp_path / 'server.db'}\n"
                       f"mqtt: {{url: '{broker.url}', client_id: kill-test}}\n"
                       f"http: {{bind: '127.0.0.1:{port}', public_url: 'http://127.0.0.1:{port}'}}\n"
                       f"registry: {reg}\n", encoding="utf-8")
        srv = ServerProcess(cfg, port)
        yield srv, broker, tmp_path / "server.db"
        srv.stop()


def test_sigkill_mid_ingest_loses_nothing_and_duplicates_nothing(setup) -> None:
    srv, broker, db = setup
    srv.start()
    node = FakeNode(broker)
    try:
        sent: dict[str, bytes] = {}
        for i in range(N):
            kind = "child_near_water" if i % 10 == 0 else "person_near_water"
            ev = Event.make(kind, "heyuan-01", "heyuan-shantang", track_id=i)
            sent[ev.id] = encode(ev)
            node.client.publish(node.topics.event("heyuan-01"), sent[ev.id], qos=1)
        ids = set(sent)
        wait_for(lambda: _count(db, "select count(*) from events") > 0, 20, "first commits")
        srv.kill()
        at_kill = _count(db, "select count(*) from events")
        srv.start()
        # as a node's outbox does: what the server has not confirmed is sent again (a burst of
        # 300 from one node is more than its share of the ingest queue, so part of it waits)
        end = time.monotonic() + 90
        while not ids <= node.acked and time.monotonic() < end:
            for eid in sorted(ids - node.acked):
                node.client.publish(node.topics.event("heyuan-01"), sent[eid], qos=1)
            with contextlib.suppress(AssertionError):
                node.wait_acked(ids, timeout=5)
        node.wait_acked(ids, timeout=1)
        assert _count(db, "select count(*) from events") == N
        assert _count(db, "select count(distinct id) from events") == N
        assert _count(db, "select count(*) from alerts") == 1
        assert _count(db, "select event_count from alerts") == N // 10
        print(f"events committed when killed: {at_kill}/{N}")
    finally:
        node.close()
