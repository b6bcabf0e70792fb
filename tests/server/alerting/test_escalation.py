"""Escalation on a fake clock with real receivers: steps, restart, failures, silences, tasks."""

from __future__ import annotations

import base64
import re
import threading
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from protocol.payloads import Event, encode
from server.access import registry
from server.alerting import alerts
from server.app import build
from server.core.db import (
    Alert,
    Delivery,
    EquipmentState,
    Node,
    Person,
    RosterEntry,
    Silence,
    TimelineEntry,
)
from server.link.broker import free_port
from server.link.ingest import Inbound, Ingestor
from tests.server.conftest import PageReceiver, make_config
from tests.support import FakeClock, wait_for

JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 500 + b"\xff\xd9"
P = "pondwatch/v1/node"


class Mailbox:
    """aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.cond = threading.Condition()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        with self.cond:
            self.messages.append(envelope.content)
            self.cond.notify_all()
        return "250 OK"


@pytest.fixture
def smtp():
    box = Mailbox()
    ctl = Controller(box, hostname="127.0.0.1", port=free_port())
    ctl.start()
    yield ctl.port, box
    ctl.stop()


class Harness:
    """Services on a fake clock, fed through the real ingest code path."""

    def __init__(self, tmp_path: Path, receiver: PageReceiver, smtp_port: int | None = None,
                 clock: FakeClock | None = None, **extra) -> None:
        self.clock = clock or FakeClock(datetime(2026, 7, 1, 8, 0, tzinfo=UTC))
        self.cfg = make_config(tmp_path, receiver, "mqtt://127.0.0.1:1", smtp_port, **extra)
        self.receiver = receiver
        _, self.svc = build(self.cfg, self.clock)
        self.svc.prepare()
        self.ing = Ingestor(self.cfg, self.svc.sessions, self.clock, self.svc.metrics,
                            "mqtt://127.0.0.1:1")

    def event(self, type_: str = "child_near_water", node: str = "heyuan-01",
              pond: str = "heyuan-shantang", **kw) -> Event:
        ev = Event.make(type_, node, pond, ts=self.clock.now(), **kw)
        self.ing.process(Inbound(f"{P}/{node}/event", encode(ev), 1, 1))
        return ev

    def tick(self, advance: float = 0.0) -> int:
        if advance:
            self.clock.advance(advance)
        n = self.svc.escalator.tick()
        assert self.svc.pager.idle(15)
        return n

    def alert(self, alert_id: int | None = None) -> Alert:
        with self.svc.sessions() as s:
            if alert_id is None:
                return s.scalars(select(Alert).order_by(Alert.id.desc())).first()
            return s.get(Alert, alert_id)

    def paged(self) -> list[str]:
        return [p.lstrip("/") for p in self.receiver.paths]

    def close(self) -> None:
        self.svc.stop()


@pytest.fixture
def h(tmp_path: Path, receiver: PageReceiver):
    harness = Harness(tmp_path, receiver)
    yield harness
    harness.close()


def test_default_policy_steps_on_time_until_acknowledged(h: Harness) -> None:
    h.event()
    assert h.tick() == 1
    assert h.paged() == ["guo-yong"]
    assert h.alert().state == "notified"
    assert h.tick(59) == 0
    assert h.tick(1) == 1
    assert sorted(h.paged()[1:]) == ["guo-yong", "kang-donghai", "liu-min"]
    assert "第2次通知" in h.receiver.pages[-1]["message"]
    assert h.tick(119) == 0
    assert h.tick(1) == 1
    assert h.paged()[4:] == ["duty-quanjiang"]
    assert h.tick(180) == 1  # repeat until acknowledged
    assert h.paged()[5:] == ["duty-quanjiang"]
    with h.svc.sessions() as s:
        a = s.scalars(select(Alert)).one()
        assert alerts.act(s, a, "ack", "duty-quanjiang", h.clock.now())
        s.commit()
    assert h.tick(299) == 0  # acknowledged: nothing until on_scene_timeout_s (300 s)
    with h.svc.sessions() as s:
        a = s.scalars(select(Alert)).one()
        assert alerts.act(s, a, "on_scene", "guo-yong", h.clock.now())
        s.commit()
    assert h.tick(600) == 0
    assert len(h.paged()) == 6
    with h.svc.sessions() as s:
        rows = s.scalars(select(TimelineEntry).where(TimelineEntry.kind == "delivery")).all()
        assert len(rows) == 6 and {r.result for r in rows} == {"ok"}
        assert {r.channel for r in rows} == {"json"}
        states = [r.state for r in s.scalars(select(TimelineEntry).where(
            TimelineEntry.kind == "state").order_by(TimelineEntry.id))]
        assert states == ["open", "notified", "acknowledged", "on_scene"]


def test_restart_mid_escalation_fires_next_step_once_on_time(tmp_path: Path,
                                                             receiver: PageReceiver) -> None:
    first = Harness(tmp_path, receiver)
    first.event("person_in_water")
    first.tick()
    first.clock.advance(30)
    first.close()  # server goes down 30 s into the alert
    clock = FakeClock(first.clock.now())
    second = Harness(tmp_path, receiver, clock=clock)
    try:
        second.svc.start(mqtt=False, escalate=False)
        assert second.tick(29) == 0  # 59 s: not yet
        assert second.tick(1) == 1  # 60 s: step 1, once
        assert second.tick() == 0
        assert len(receiver.paths) == 4
        assert second.alert().step == 2
    finally:
        second.close()


def test_pending_delivery_is_resent_after_crash(tmp_path: Path, receiver: PageReceiver) -> None:
    first = Harness(tmp_path, receiver)
    first.event("sos")
    with first.svc.sessions() as s, s.begin():  # the step was claimed, the page never left
        a = s.scalars(select(Alert)).one()
        a.step, a.next_step_at = 1, a.opened_at + timedelta(seconds=60)
        s.add(Delivery(alert_id=a.id, step=0, person_id="guo-yong", status="pending",
                       created_at=first.clock.now()))
    first.close()
    second = Harness(tmp_path, receiver, clock=FakeClock(first.clock.now()))
    try:
        second.svc.escalator.start()
        receiver.wait(1)
        assert receiver.paths == ["/guo-yong"]
    finally:
        second.close()


def test_unreachable_person_skips_to_next_step_at_once(h: Harness) -> None:
    with h.svc.sessions() as s, s.begin():
        s.get(Person, "guo-yong").notify = ["json://127.0.0.1:1/dead", "bogus://nothing"]
    h.event()
    h.tick()
    assert h.paged() == []
    assert h.tick() == 1  # no clock advance: the next step is due now
    assert sorted(h.paged()) == ["kang-donghai", "liu-min"]
    with h.svc.sessions() as s:
        fails = s.scalars(select(TimelineEntry).where(TimelineEntry.result == "failed")).all()
        assert {(f.person_id, f.channel) for f in fails} == {("guo-yong", "json"),
                                                             ("guo-yong", "bogus")}
        assert s.scalars(select(Delivery).where(Delivery.person_id == "guo-yong")).first()\
            .status == "failed"


def test_slow_channel_does_not_delay_other_pages(tmp_path: Path, receiver: PageReceiver) -> None:
    """A channel that does not answer holds only its own page: the other arrives meanwhile."""
    answer = threading.Event()
    slow = PageReceiver(hold=answer)
    h = Harness(tmp_path, receiver)
    try:
        with h.svc.sessions() as s, s.begin():
            # rto: Apprise's read timeout, so the held page waits for the test, not Apprise.
            s.get(Person, "guo-yong").notify = [slow.url("guo-yong") + "?rto=60"]
        h.event(pond="heyuan-shantang")
        h.event(node="xiatang-01", pond="xiatang")
        h.svc.escalator.tick()
        wait_for(lambda: slow.waiting, 15, "the slow channel holding its page")
        receiver.wait(1, timeout=15)
        assert receiver.paths == ["/kang-donghai"]
        assert slow.pages == [] and slow.waiting == 1
        answer.set()
        assert h.svc.pager.idle(15)
        assert len(slow.pages) == 1
    finally:
        answer.set()
        h.close()
        slow.close()


def test_duty_desk_mail_arrives_over_smtp(tmp_path: Path, receiver: PageReceiver, smtp) -> None:
    port, box = smtp
    h = Harness(tmp_path, receiver, smtp_port=port)
    try:
        h.event("person_submerged")
        h.tick()
        h.tick(60)
        assert box.messages == []
        h.tick(120)
        with box.cond:
            assert box.cond.wait_for(lambda: box.messages, 10)
        msg = message_from_bytes(box.messages[0])
        from email.header import decode_header, make_header
        assert "禾源山塘" in str(make_header(decode_header(msg["Subject"])))
        body = msg.get_payload(decode=True) if not msg.is_multipart() else \
            msg.get_payload(0).get_payload(decode=True)
        assert re.search(rb"/a/[A-Za-z0-9_.-]+", body)
    finally:
        h.close()


def test_snapshot_is_attached_only_where_an_admin_allows_images(tmp_path: Path,
                                                                receiver: PageReceiver) -> None:
    """paging.attach_images lists the channel kinds that may carry the snapshot (it may show
    a minor); by default none does and the page carries only the signed link."""
    (tmp_path / "plain").mkdir()
    (tmp_path / "images").mkdir()
    plain = Harness(tmp_path / "plain", receiver)
    try:
        ev = plain.event(snapshot=True)
        plain.ing.process(Inbound(f"{P}/heyuan-01/snapshot/{ev.id}", JPEG, 2, 1))
        plain.tick()
        assert plain.receiver.pages[0]["attachments"] == []
        assert re.search(r"/a/[A-Za-z0-9_.-]+", plain.receiver.pages[0]["message"])
    finally:
        plain.close()
    h = Harness(tmp_path / "images", receiver, paging={"attach_images": ["JSON"]})
    try:
        ev = h.event(snapshot=True)
        h.ing.process(Inbound(f"{P}/heyuan-01/snapshot/{ev.id}", JPEG, 2, 1))
        h.tick()
        att = h.receiver.pages[1]["attachments"]
        assert len(att) == 1 and base64.b64decode(att[0]["base64"]) == JPEG
        assert att[0]["mimetype"] == "image/jpeg"
    finally:
        h.close()


def test_silenced_pond_records_events_pages_nobody(h: Harness) -> None:
    with h.svc.sessions() as s, s.begin():
        s.add(Silence(pond_id="heyuan-shantang", starts=h.clock.now(),
                      ends=h.clock.now() + timedelta(hours=1), reason="更换摄像头"))
        s.add(Silence(node_id="xiatang-01", starts=h.clock.now(),
                      ends=h.clock.now() + timedelta(hours=1), reason="test"))
    h.event()
    h.event(node="xiatang-01", pond="xiatang")
    h.event(node="beitang-01", pond="beitang")  # not silenced
    h.tick()
    assert h.paged() == ["guo-yong"]  # only beitang's alert
    h.tick(60)
    h.tick(120)
    assert set(h.paged()) == {"guo-yong", "kang-donghai", "liu-min", "duty-quanjiang"}
    with h.svc.sessions() as s:
        muted = s.scalars(select(Alert).where(Alert.silenced)).all()
        assert {a.pond_id for a in muted} == {"heyuan-shantang", "xiatang"}
        assert all(a.state == "open" and a.step == 0 for a in muted)
    h.tick(3600)  # window over: a new event pages again
    h.event("sos")
    before = len(h.paged())
    h.tick()
    assert h.paged()[before:] == ["guo-yong"]


def test_roster_decides_who_is_on_duty(h: Harness) -> None:
    with h.svc.sessions() as s, s.begin():
        s.add(RosterEntry(grid_id="gongyu", person_id="kang-donghai", role="primary",
                          starts=h.clock.now() - timedelta(hours=1),
                          ends=h.clock.now() + timedelta(hours=1)))
    h.event()
    h.tick()
    assert h.paged() == ["kang-donghai"]
    h.tick(60)  # backup from the grid (guo-yong), area officer; constable kang again
    assert sorted(h.paged()[1:]) == ["guo-yong", "kang-donghai", "liu-min"]


def test_equipment_missing_is_a_task_for_constable_camera_fault_for_technicians(
        h: Harness) -> None:
    h.event("equipment_missing", item="lifebuoy")
    h.event("equipment_missing", item="lifebuoy")  # folds: one task
    h.event("camera_fault", reason="lens_covered")
    h.tick()
    assert sorted(h.paged()) == ["guo-yong", "tech-wang"]
    titles = {p["title"] for p in h.receiver.pages}
    assert "【待办】禾源山塘：救生圈缺失" in titles and "【运维】禾源山塘：摄像头故障" in titles
    assert h.tick(600) == 0  # non-urgent: no 1-minute escalation
    with h.svc.sessions() as s:
        eq = s.get(EquipmentState, ("heyuan-shantang", "lifebuoy"))
        assert eq.state == "missing" and eq.since == datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
    h.event("equipment_restored", item="lifebuoy")
    h.event("camera_ok")
    with h.svc.sessions() as s:
        assert s.get(EquipmentState, ("heyuan-shantang", "lifebuoy")).state == "present"
        assert {a.state for a in s.scalars(select(Alert))} == {"resolved"}


def test_invalid_actions_are_refused(h: Harness) -> None:
    h.event()
    with h.svc.sessions() as s:
        a = s.scalars(select(Alert)).one()
        with pytest.raises(alerts.AlertError):
            alerts.act(s, a, "resolve", "x", h.clock.now())  # outcome missing
        with pytest.raises(alerts.AlertError):
            alerts.act(s, a, "dance", "x", h.clock.now())
        assert alerts.act(s, a, "on_scene", "guo-yong", h.clock.now())
        assert a.acked_at is not None
        assert not alerts.act(s, a, "ack", "guo-yong", h.clock.now())  # no going back
        assert alerts.act(s, a, "resolve", "guo-yong", h.clock.now(), "false_alarm")
        assert not alerts.act(s, a, "resolve", "guo-yong", h.clock.now(), "real")


def test_grid_picks_its_own_policy(tmp_path: Path, receiver: PageReceiver) -> None:
    h = Harness(tmp_path, receiver, escalation={"policies": {
        "default": {},
        "rural": {"steps": [{"after_s": 0, "targets": ["constable", "backup"]},
                            {"after_s": 120, "targets": ["duty_desk"]}], "repeat_s": 600}}})
    try:
        from server.core.db import Grid
        with h.svc.sessions() as s, s.begin():
            s.get(Grid, "dongshan").policy = "rural"
        h.event(node="xiatang-01", pond="xiatang")
        h.tick()
        assert sorted(h.paged()) == ["guo-yong", "kang-donghai"]
        assert h.tick(60) == 0
        h.tick(60)
        assert h.paged()[2:] == ["duty-quanjiang"]
        assert h.tick(599) == 0 and h.tick(1) == 1  # repeats every 600 s
    finally:
        h.close()


def test_two_replicas_never_send_the_same_page(h: Harness) -> None:
    from server.alerting.paging import Pager

    other = Pager(h.svc.sessions, h.clock, h.svc.metrics, h.svc.links, 4)
    try:
        h.event()
        with h.svc.sessions() as s, s.begin():
            a = s.scalars(select(Alert)).one()
            rows = h.svc.escalator._fire(s, a, h.clock.now())  # noqa: SLF001
            s.flush()
            ids = [d.id for d in rows]
        h.svc.pager.submit(ids)
        other.submit(ids)
        assert h.svc.pager.idle(10) and other.idle(10)
        assert h.paged() == ["guo-yong"]
    finally:
        other.stop()


def test_concurrent_ticks_fire_a_step_once(h: Harness) -> None:
    """Two ticks at once (the loop thread and a test, or two SQLite replicas): one page."""
    h.event("sos", node="xiatang-01", pond="xiatang")  # two alerts, raced by four ticks
    h.event("person_in_water")
    barrier = threading.Barrier(4)
    fired: list[int] = []

    def run() -> None:
        barrier.wait()
        fired.append(h.svc.escalator.tick())

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert h.svc.pager.idle(15)
    assert sum(fired) == 2
    with h.svc.sessions() as s:
        assert len(s.scalars(select(Delivery)).all()) == 2
    assert sorted(h.paged()) == ["guo-yong", "kang-donghai"]


def test_technicians_of_the_pond_station_else_all(tmp_path: Path, h: Harness) -> None:
    """Camera faults and offline nodes page the station's technicians; a station without
    its own technician falls back to every technician."""
    extra = tmp_path / "north.yaml"
    extra.write_text(f"""
stations:
  - {{id: beishan, name: 北山派出所}}
  - {{id: nanxi, name: 南溪派出所}}
grids:
  - {{id: beishan-g, name: 北山网格, station: beishan, constable: guo-yong}}
  - {{id: nanxi-g, name: 南溪网格, station: nanxi, constable: guo-yong}}
ponds:
  - {{id: beishan-tang, name: 北山塘, grid: beishan-g}}
  - {{id: nanxi-tang, name: 南溪塘, grid: nanxi-g}}
nodes:
  - {{id: beishan-01, pond: beishan-tang}}
  - {{id: nanxi-01, pond: nanxi-tang}}
people:
  - {{id: tech-li, name: 李工, role: technician, stations: [beishan],
     notify: ["{h.receiver.url('tech-li')}"]}}
  - {{id: tech-zhao, name: 赵工, role: technician, stations: "beishan; quanjiang",
     notify: ["{h.receiver.url('tech-zhao')}"]}}
""", encoding="utf-8")
    registry.import_file(h.svc.sessions, extra)
    h.event("camera_fault", node="beishan-01", pond="beishan-tang", reason="lens_covered")
    h.tick()
    assert sorted(h.paged()) == ["tech-li", "tech-zhao"]
    h.receiver.paths.clear()
    h.event("camera_fault", node="heyuan-01", reason="no_frames")  # quanjiang: zhao only
    h.tick()
    assert h.paged() == ["tech-zhao"]
    h.receiver.paths.clear()
    with h.svc.sessions() as s, s.begin():  # nanxi has no technician: everyone is paged
        alerts.node_status(s, s.get(Node, "nanxi-01"), "offline", "default", h.clock.now())
    h.tick()
    assert sorted(h.paged()) == ["tech-li", "tech-wang", "tech-zhao"]
