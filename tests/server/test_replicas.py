"""Several server replicas: delivery leases on SQLite and a fake clock, then two real
`pondwatch-server run` processes on one PostgreSQL and one Mosquitto (shared subscription),
one of them SIGKILLed mid-escalation."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import select

from server.alerting.paging import LEASE_S, SWEEP_AGE_S, Pager
from server.core.db import Alert, Delivery
from server.link.broker import Mosquitto, free_port
from tests.server.alerting.test_escalation import Harness
from tests.server.conftest import SECRET, FakeNode, PageReceiver, registry_text
from tests.server.core.test_postgres import PG_URL, pg_url  # noqa: F401  (fixture)
from tests.support import ROOT, wait_for


def _held_delivery(h: Harness, owner: str, lease_s: float) -> int:
    """An alert whose step-0 page another replica is sending right now (its lease)."""
    h.event("sos")
    with h.svc.sessions() as s, s.begin():
        a = s.scalars(select(Alert)).one()
        a.step, a.next_step_at = 1, a.opened_at + timedelta(seconds=60)
        d = Delivery(alert_id=a.id, step=0, person_id="guo-yong", status="sending",
                     created_at=h.clock.now(), claimed_by=owner,
                     lease_until=h.clock.now() + timedelta(seconds=lease_s))
        s.add(d)
        s.flush()
        return d.id


def _status(h: Harness, did: int) -> tuple[str, str | None]:
    with h.svc.sessions() as s:
        d = s.get(Delivery, did)
        assert d is not None
        return d.status, d.claimed_by


def test_starting_replica_leaves_a_live_replicas_delivery_alone(
        tmp_path: Path, receiver: PageReceiver) -> None:
    h = Harness(tmp_path, receiver)
    try:
        did = _held_delivery(h, "replica-a", LEASE_S)
        h.svc.pager.owner = "replica-b"
        assert h.svc.pager.resume() == 0
        assert h.svc.pager.sweep() == 0
        assert _status(h, did) == ("sending", "replica-a"), "not reset while its lease runs"
        h.clock.advance(LEASE_S + 1)  # replica-a died holding it: its lease runs out
        assert h.svc.pager.sweep() == 1
        assert h.svc.pager.idle(10)
        assert receiver.paths == ["/guo-yong"]
        assert _status(h, did) == ("sent", "replica-b")
        assert h.svc.pager.sweep() == 0
    finally:
        h.close()


def test_a_replica_restarting_resumes_its_own_deliveries_at_once(
        tmp_path: Path, receiver: PageReceiver) -> None:
    h = Harness(tmp_path, receiver)
    try:
        did = _held_delivery(h, "replica-a", LEASE_S)
        h.svc.pager.owner = "replica-a"  # the same installation, back after a crash
        assert h.svc.pager.resume() == 1
        assert h.svc.pager.idle(10)
        assert _status(h, did) == ("sent", "replica-a") and receiver.paths == ["/guo-yong"]
    finally:
        h.close()


def test_pending_page_of_a_replica_that_died_before_sending_is_swept(
        tmp_path: Path, receiver: PageReceiver) -> None:
    h = Harness(tmp_path, receiver)
    other = Pager(h.svc.sessions, h.clock, h.svc.metrics, h.svc.links, 2)
    try:
        h.event("sos")
        with h.svc.sessions() as s, s.begin():
            a = s.scalars(select(Alert)).one()
            rows = h.svc.escalator._fire(s, a, h.clock.now())  # noqa: SLF001 (step claimed,
            s.flush()                                            # then the replica died)
            [did] = [d.id for d in rows]
        assert other.sweep() == 0, "too fresh: its creator may still be about to send it"
        h.clock.advance(SWEEP_AGE_S)
        assert other.sweep() == 1 and h.svc.pager.sweep() in (0, 1)
        assert other.idle(10) and h.svc.pager.idle(10)
        assert receiver.paths == ["/guo-yong"], "swept by two replicas, sent once"
        assert _status(h, did)[0] == "sent"
    finally:
        other.stop()
        h.close()


# --- two real processes on PostgreSQL ------------------------------------------------------

POLICY = {"default": {"steps": [{"after_s": 0, "targets": ["constable"]},
                                {"after_s": 4, "targets": ["backup"]},
                                {"after_s": 8, "targets": ["duty_desk"]}],
                      "repeat_s": 3600}}


class Replica:
    """One `pondwatch-server run` process with its own client id and HTTP port."""

    def __init__(self, d: Path, name: str, pg: str, broker: Mosquitto, reg: Path) -> None:
        """Write its server.yaml and start it."""
        self.port, self.name = free_port(), name
        cfg = {"environment": "dev", "secret_key": SECRET, "database": pg,
               "mqtt": {"url": broker.url, "shared_group": "pondwatch"},
               "http": {"bind": f"127.0.0.1:{self.port}",
                        "public_url": f"http://127.0.0.1:{self.port}"},
               "registry": str(reg), "escalation": {"policies": POLICY}}
        path = d / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=str(ROOT), PONDWATCH_MQTT_CLIENT_ID=f"pw-{name}")
        self.log = (d / f"{name}.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "server.cli", "run", str(path)],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=self.log)

    def connected(self) -> bool:
        """Subscribed to the shared group."""
        try:
            return bool(httpx.get(f"http://127.0.0.1:{self.port}/healthz",
                                  timeout=1).json()["mqtt_connected"])
        except httpx.HTTPError:
            return False

    def ingested(self) -> float:
        """Events this replica took off the shared subscription."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        found = re.findall(r'^pondwatch_ingest_messages_total\{kind="event"\} (\S+)$', text,
                           re.M)
        return float(found[0]) if found else 0.0

    def close(self) -> None:
        """Stop (or kill) the process."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def replicas(tmp_path: Path, receiver: PageReceiver, pg_url: str  # noqa: F811
             ) -> Iterator[tuple[Replica, Replica, Mosquitto]]:
    """Two replicas on one PostgreSQL schema and one broker."""
    reg = tmp_path / "registry.yaml"
    reg.write_text(registry_text(receiver), encoding="utf-8")
    with Mosquitto(data_dir=tmp_path / "mq") as broker:
        a = Replica(tmp_path, "a", pg_url, broker, reg)
        wait_for(a.connected, 40, "replica a")  # a migrates the schema first
        b = Replica(tmp_path, "b", pg_url, broker, reg)
        try:
            wait_for(b.connected, 40, "replica b")
            yield a, b, broker
        finally:
            a.close()
            b.close()


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="PONDWATCH_TEST_PG_URL not set")
def test_two_replicas_share_ingest_page_once_and_survive_a_kill(
        replicas: tuple[Replica, Replica, Mosquitto], receiver: PageReceiver) -> None:
    a, b, broker = replicas
    nodes = [FakeNode(broker, n) for n in ("heyuan-01", "xiatang-01", "beitang-01")]
    ponds = {"heyuan-01": "heyuan-shantang", "xiatang-01": "xiatang", "beitang-01": "beitang"}
    try:
        ids: dict[str, set[str]] = {}
        for n in nodes:  # 3 x 60 ordinary events: split between the replicas, stored once
            ids[n.node_id] = {n.event("person_near_water", ponds[n.node_id], track_id=i).id
                              for i in range(60)}
        for n in nodes:
            n.wait_acked(ids[n.node_id], 30)
        share = (a.ingested(), b.ingested())
        assert sum(share) >= 180 and min(share) > 0, f"both replicas ingest: {share}"

        crit = nodes[0].event("person_submerged")  # pages guo-yong, then kang-donghai, duty
        nodes[0].wait_acked({crit.id}, 10)
        wait_for(lambda: receiver.for_path("guo-yong"), 10, "step 0 page")
        a.proc.send_signal(signal.SIGKILL)  # mid-escalation: steps 1 and 2 still to come
        a.proc.wait(10)
        wait_for(lambda: receiver.for_path("kang-donghai"), 20, "step 1 from replica b")
        wait_for(lambda: receiver.for_path("duty-quanjiang"), 20, "step 2 from replica b")
        after = nodes[1].event("child_near_water", "xiatang")  # b alone ingests and pages
        more = {nodes[2].event("person_near_water", "beitang", track_id=i).id for i in range(20)}
        nodes[1].wait_acked({after.id}, 20)
        nodes[2].wait_acked(more, 20)  # none stranded in the dead replica's session
        wait_for(lambda: len(receiver.for_path("kang-donghai")) >= 2, 20, "new alert paged")
        pages = Counter((p, m["message"].split("告警编号")[1].split("\n")[0])
                        for p, m in zip(receiver.paths, receiver.pages, strict=True))
        dupes = {k: v for k, v in pages.items() if v > 1}
        assert not dupes, f"duplicate pages: {dupes}"
        assert sorted(p for p, _ in pages) == ["/duty-quanjiang", "/guo-yong",
                                               "/kang-donghai", "/kang-donghai"]
    finally:
        for n in nodes:
            n.close()
