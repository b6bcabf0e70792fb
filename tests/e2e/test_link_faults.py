"""Faults between node and server: nothing lost, nothing doubled (issue 5, item 7)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine, func, select, text

from edge.config import NodeConfig
from edge.link.mqtt import CRITICAL_RECONNECT_S, NodeLink
from edge.link.outbox import Outbox
from protocol import Event
from scripts.page_receiver import PageReceiver
from server.core.config import parse_config
from server.core.db import Alert, EventRow
from server.link.broker import Mosquitto, free_port
from server.runner import Server
from tests.support import FakeClock, wait_for

from .tcpproxy import TcpProxy

HERE = Path(__file__).resolve().parent
NODE = "heyuan-01"
POND = "heyuan-shantang"
OUTAGE_S = float(os.environ.get("PONDWATCH_TEST_OUTAGE_S", "60"))



def write_registry(d: Path, notify: Sequence[str] = ()) -> Path:
    reg = d / "registry.yaml"
    reg.write_text(yaml.safe_dump({
        "stations": [{"id": "quanjiang", "name": "泉江派出所"}],
        "grids": [{"id": "gongyu", "name": "共裕网格", "station": "quanjiang",
                   "constable": "guo-yong"}],
        "ponds": [{"id": POND, "name": "禾源山塘", "village": "禾源村", "grid": "gongyu",
                   "lat": 26.33, "lon": 114.52}],
        "nodes": [{"id": NODE, "pond": POND}],
        "people": [{"id": "guo-yong", "name": "郭勇", "role": "constable",
                    "notify": list(notify)}],
    }, allow_unicode=True))
    return reg


def server_dict(d: Path, broker_url: str, notify: Sequence[str] = ()) -> dict[str, object]:
    port = free_port()
    return {"environment": "dev", "secret_key": "test-secret-key-0123456789",
            "database": f"sqlite:///{d / 'server.db'}", "mqtt": {"url": broker_url},
            "http": {"bind": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"},
            "registry": str(write_registry(d, notify))}


def node_cfg(d: Path, port: int) -> NodeConfig:
    return NodeConfig.model_validate({
        "node_id": NODE, "pond_id": POND,
        "zones": {"water": [[0, 0.6], [1, 0.6], [1, 1], [0, 1]]},
        "mqtt": {"url": f"mqtt://127.0.0.1:{port}", "keepalive_s": 5},
        "outbox": str(d / "outbox.db")})


def has_events_table(d: Path) -> bool:
    """Whether the server has made its database (read-only: never creates the file itself)."""
    db = d / "server.db"
    if not db.exists():
        return False
    engine = create_engine(f"sqlite:///file:{db}?mode=ro&uri=true")
    try:
        with engine.connect() as c:
            row = c.execute(text("SELECT name FROM sqlite_master WHERE name='events'")).first()
        return row is not None
    finally:
        engine.dispose()


def db_ids(d: Path) -> list[str]:
    if not has_events_table(d):
        return []
    engine = create_engine(f"sqlite:///{d / 'server.db'}")
    try:
        with engine.connect() as c:
            return list(c.scalars(select(EventRow.id)))
    finally:
        engine.dispose()


def alert_count(d: Path, kind: str) -> int:
    engine = create_engine(f"sqlite:///{d / 'server.db'}")
    try:
        with engine.connect() as c:
            return int(c.scalar(select(func.count()).select_from(Alert)
                                .where(Alert.kind == kind)) or 0)
    finally:
        engine.dispose()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    m = Mosquitto(data_dir=tmp_path / "mq").start()
    yield m
    m.close()


class EventPubacks:
    """The broker's PUBACK reason code for each event the link publishes, read through the
    paho client's own publish and on_publish (wrapped; the link's handlers still run)."""

    def __init__(self, link: NodeLink) -> None:
        """Wrap the link's client; call before link.start()."""
        self.topic = link.topics.event(link.node)
        self.mids: list[int] = []
        self.codes: dict[int, int] = {}
        publish = link.client.publish
        on_publish: Callable[..., None] | None = link.client.on_publish
        assert on_publish is not None

        def spy_publish(topic: str, *args: Any, **kwargs: Any) -> mqtt.MQTTMessageInfo:
            info = publish(topic, *args, **kwargs)
            if topic == self.topic:
                self.mids.append(info.mid)
            return info

        def spy_on_publish(c: mqtt.Client, u: Any, mid: int, rc: Any, p: Any) -> None:
            self.codes[mid] = rc.value
            on_publish(c, u, mid, rc, p)

        link.client.publish = spy_publish  # type: ignore[method-assign]
        link.client.on_publish = spy_on_publish

    def codes_of_events(self) -> list[int]:
        """Reason codes of the event publishes the broker has answered, in publish order."""
        return [self.codes[m] for m in self.mids if m in self.codes]


def session_present(port: int, client_id: str) -> bool:
    """Whether the broker holds a session for client_id (an MQTT v5 connect that does not start
    clean and asks no expiry, so any session ends when this probe leaves)."""
    flags: list[bool] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.on_connect = lambda _c, _u, f, _rc, _p: flags.append(f.session_present)
    c.connect("127.0.0.1", port, clean_start=False)
    c.loop_start()
    try:
        wait_for(lambda: flags, 10, "CONNACK")
        return flags[0]
    finally:
        c.disconnect()
        c.loop_stop()


def raise_events(box: Outbox, link: NodeLink, n: int, prefix: str,
                 kind: str = "person_near_water") -> list[str]:
    ids = []
    for i in range(n):
        ev = Event.make(kind, NODE, POND, id=f"{prefix}{i:04d}", track_id=i)
        box.put(ev)
        ids.append(ev.id)
        link.wake()
    return ids


def test_broker_down_60_s_while_100_events_are_raised(tmp_path: Path, broker: Mosquitto) -> None:
    with Server(parse_config(server_dict(tmp_path, broker.url))) as srv:
        assert srv.services.ingest and srv.services.ingest.connected.wait(10)
        cfg = node_cfg(tmp_path, broker.port)
        box = Outbox(cfg.outbox)
        link = NodeLink(cfg, box)
        link.start()
        try:
            assert link.connected.wait(10)
            broker.stop()
            wait_for(lambda: not link.connected.is_set(), 10, "node to notice the broker is gone")
            ids = raise_events(box, link, 100, "out")
            time.sleep(OUTAGE_S)  # the outage itself is what is being tested
            broker.start()
            wait_for(lambda: box.depth() == 0, 120, "outbox to drain after the outage")
            got = db_ids(tmp_path)
            assert sorted(got) == sorted(ids) and len(got) == 100
        finally:
            link.stop()


def test_broker_back_empty_while_node_holds_an_event(tmp_path: Path, broker: Mosquitto) -> None:
    """The broker took the event (PUBACK) for an absent server, then lost everything."""
    cfg = node_cfg(tmp_path, broker.port)
    box = Outbox(cfg.outbox, retry_s=1.0, retry_max_s=2.0)
    link = NodeLink(cfg, box)
    pubacks = EventPubacks(link)
    srv = Server(parse_config(server_dict(tmp_path, broker.url))).start()
    assert srv.services.ingest and srv.services.ingest.connected.wait(10)
    server_id = srv.services.ingest.client_id
    srv.stop()  # the server is away; the broker queues for its session
    link.start()
    try:
        assert link.connected.wait(10)
        [event_id] = raise_events(box, link, 1, "empty", kind="child_near_water")
        codes = wait_for(pubacks.codes_of_events, 10, "the broker's PUBACK of the event")
        # success, not 0x10 (no matching subscribers): queued for the absent server's session
        assert codes[0] == 0, f"PUBACK reason {codes[0]:#x}"
        assert box.depth() == 1, "a PUBACK is not the server's confirmation"
        broker.kill()
        broker.wipe()
        broker.start()
        assert not session_present(broker.port, server_id), "the broker must come back empty"
        srv = Server(parse_config(server_dict(tmp_path, broker.url))).start()
        wait_for(lambda: box.depth() == 0, 60, "the node to re-send and the server to confirm")
        assert db_ids(tmp_path) == [event_id]
        assert alert_count(tmp_path, "child_near_water") == 1
    finally:
        link.stop()
        srv.stop()


def test_node_killed_mid_publish_delivers_the_rest_after_restart(
        tmp_path: Path, broker: Mosquitto) -> None:
    n = 300
    cfg = node_cfg(tmp_path, broker.port)
    cfg_file = tmp_path / "node.json"
    cfg_file.write_text(cfg.model_dump_json())
    with Server(parse_config(server_dict(tmp_path, broker.url))) as srv:
        assert srv.services.ingest and srv.services.ingest.connected.wait(10)
        first = subprocess.Popen([sys.executable, str(HERE / "node_proc.py"), str(cfg_file),
                                  str(n)])
        try:
            wait_for(lambda: len(db_ids(tmp_path)) >= 1, 60, "the first events to arrive")
            first.send_signal(signal.SIGKILL)
            first.wait()
            assert len(db_ids(tmp_path)) < n, "killed before it finished"
        finally:
            if first.poll() is None:
                first.kill()
        second = subprocess.Popen([sys.executable, str(HERE / "node_proc.py"), str(cfg_file)])
        try:
            wait_for(lambda: len(db_ids(tmp_path)) == n, 120, "every event after restart")
            wait_for(lambda: Outbox(cfg.outbox).depth() == 0, 30, "the outbox to drain")
        finally:
            second.terminate()
            second.wait(10)
    assert sorted(db_ids(tmp_path)) == [f"k{i:04d}" for i in range(n)]


def test_server_killed_mid_ingest_loses_nothing_and_pages_once(
        tmp_path: Path, broker: Mosquitto) -> None:
    conf = tmp_path / "server.yaml"
    conf.write_text(yaml.safe_dump(server_dict(tmp_path, broker.url), allow_unicode=True))
    exe = [sys.executable, "-m", "server.cli", "run", str(conf)]
    cfg = node_cfg(tmp_path, broker.port)
    box = Outbox(cfg.outbox, retry_s=1.0, retry_max_s=4.0)
    link = NodeLink(cfg, box)
    server = subprocess.Popen(exe, cwd=HERE.parents[1])
    try:
        wait_for(lambda: has_events_table(tmp_path), 30, "server database")
        link.start()
        ids = raise_events(box, link, 200, "crit", kind="child_near_water")
        ids += raise_events(box, link, 200, "info")
        wait_for(lambda: len(db_ids(tmp_path)) >= 20, 60, "ingest to be under way")
        server.send_signal(signal.SIGKILL)
        server.wait()
        assert len(db_ids(tmp_path)) < len(ids), "killed mid-ingest"
        server = subprocess.Popen(exe, cwd=HERE.parents[1])
        wait_for(lambda: box.depth() == 0, 120, "everything confirmed after the restart")
        assert sorted(db_ids(tmp_path)) == sorted(ids)
        assert alert_count(tmp_path, "child_near_water") == 1, "no duplicate alert"
    finally:
        link.stop()
        server.terminate()
        server.wait(10)


def test_connection_cut_in_the_middle_loses_nothing(tmp_path: Path, broker: Mosquitto) -> None:
    proxy = TcpProxy(broker.port)
    with Server(parse_config(server_dict(tmp_path, broker.url))) as srv:
        assert srv.services.ingest and srv.services.ingest.connected.wait(10)
        cfg = node_cfg(tmp_path, proxy.port)
        box = Outbox(cfg.outbox, retry_s=1.0, retry_max_s=4.0)
        link = NodeLink(cfg, box)
        link.start()
        try:
            assert link.connected.wait(10)
            ids: list[str] = []
            for burst in range(5):
                ids += raise_events(box, link, 40, f"cut{burst}-")
                time.sleep(0.05)
                proxy.cut()
            wait_for(lambda: box.depth() == 0, 90, "the outbox to drain through the proxy")
            assert sorted(db_ids(tmp_path)) == sorted(ids)
            assert proxy.cuts == 5
        finally:
            link.stop()
            proxy.close()


class ConnectCounter:
    """A TCP listener that counts connection attempts and hangs up (a broker that is not
    there yet, as the node sees it)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.attempts = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.attempts += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def test_paho_waits_between_attempts_as_the_link_says(tmp_path: Path) -> None:
    """The cadence itself is tested on the fake clock in tests/edge/link/test_reconnect.py;
    here paho runs the link's wait between real connection attempts: on the fake clock the
    waits double while nothing is critical and are CRITICAL_RECONNECT_S once one waits."""
    clock = FakeClock(1000.0)

    def pace(seconds: float) -> None:
        clock.advance(seconds)
        time.sleep(0.002)  # fake time runs ~100x real time; yield to the other threads

    counter = ConnectCounter()
    cfg = node_cfg(tmp_path, counter.port)
    box = Outbox(cfg.outbox)
    link = NodeLink(cfg, box, timer=clock, sleep=pace)
    waits: list[float] = []
    inner = link.client.wait_hook
    assert inner is not None

    def measured(ending: Callable[[], bool]) -> None:
        began = clock.t
        inner(ending)
        waits.append(round(clock.t - began, 6))
    link.client.wait_hook = measured
    link.start()
    try:
        wait_for(lambda: len(waits) >= 4, 30, "four waits without a critical event")
        assert waits[:4] == [1.0, 2.0, 4.0, 8.0], waits
        n = len(waits)
        raise_events(box, link, 1, "crit", kind="person_submerged")
        wait_for(lambda: len(waits) >= n + 5, 30, "waits after the critical event")
        # Wait n was running when the event came (cut short when it noticed), n + 1 may have
        # begun before the outbox committed it; every later one began with it waiting.
        assert waits[n + 2:n + 5] == [CRITICAL_RECONNECT_S] * 3, waits
        wait_for(lambda: counter.attempts >= n + 5, 30, "a real connection attempt per wait")
    finally:
        link.stop()
        counter.close()


def test_page_reaches_the_constable_after_the_broker_returns(
        tmp_path: Path, broker: Mosquitto) -> None:
    receiver = PageReceiver()
    outage = float(os.environ.get("PONDWATCH_TEST_RECOVERY_OUTAGE_S", "20"))
    srv = Server(parse_config(server_dict(tmp_path, broker.url, [receiver.url("guo-yong")])))
    srv.start()
    cfg = node_cfg(tmp_path, broker.port)
    box = Outbox(cfg.outbox)
    link = NodeLink(cfg, box)
    link.start()
    try:
        assert srv.services.ingest is not None and srv.services.ingest.connected.wait(10)
        assert link.connected.wait(10)
        broker.stop()
        wait_for(lambda: not link.connected.is_set(), 10, "node to notice the broker is gone")
        raise_events(box, link, 1, "drown", kind="person_submerged")
        time.sleep(outage)  # the outage itself: long enough for an ordinary backoff to grow
        broker.start()
        back = time.monotonic()
        receiver.wait(1, timeout=30)
        # How soon is not asserted here: the node retries every CRITICAL_RECONNECT_S
        # (tests/edge/link/test_reconnect.py, on the fake clock); event → page is measured
        # by bench/paging.py.
        print(f"broker back → page at the constable: {receiver.times[0] - back:.2f} s "
              f"(outage {outage:.0f} s)")
        assert receiver.paths == ["/guo-yong"]
    finally:
        link.stop()
        srv.stop()
        receiver.close()
