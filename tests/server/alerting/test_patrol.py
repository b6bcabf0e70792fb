"""The morning patrol list (巡查单): content, the time it goes out, skipped days and failures
on the admin page; fake clock, a real SMTP server and the HTTP page receiver."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from sqlalchemy import select

from server.alerting import alerts
from server.alerting.patrol import Patrol
from server.core.db import Alert, EquipmentState, Node, PatrolRun, Person
from tests.server.alerting.test_escalation import Harness, smtp  # noqa: F401 (fixture)
from tests.server.api.test_pages import as_user, make_site
from tests.server.conftest import PageReceiver

# 2026-07-02 07:00 Beijing
MORNING = datetime(2026, 7, 1, 23, 0, tzinfo=UTC)


def seed(h: Harness) -> None:
    """Kit, nodes and yesterday's alerts as a constable would find them."""
    h.clock.set(MORNING - timedelta(hours=12))  # 2026-07-01 19:00 Beijing: yesterday
    h.event("person_in_water", child=True)
    h.tick()
    with h.svc.sessions() as s, s.begin():
        a = s.scalars(select(Alert)).one()
        alerts.act(s, a, "resolve", "guo-yong", h.clock.now(), "false_alarm")
    h.event("camera_fault", reason="covered")
    h.clock.set(MORNING)
    with h.svc.sessions() as s, s.begin():
        s.add(EquipmentState(pond_id="heyuan-shantang", item="lifebuoy", state="missing",
                             since=MORNING - timedelta(hours=30), updated_at=MORNING))
        s.add(EquipmentState(pond_id="heyuan-shantang", item="rope", state="present",
                             since=MORNING, updated_at=MORNING))
        heyuan, xia = s.get(Node, "heyuan-01"), s.get(Node, "xiatang-01")
        heyuan.state, heyuan.state_reason, heyuan.state_at = "offline", "planned", MORNING
        xia.state, xia.state_reason, xia.state_at = "offline", "lost", MORNING
        s.get(Node, "beitang-01").state = "online"


@pytest.fixture
def h(tmp_path: Path, receiver: PageReceiver) -> Iterator[Harness]:
    harness = Harness(tmp_path, receiver, paging={"retries": 0, "retry_wait_s": 0})
    seed(harness)
    assert harness.svc.patrol.check() == 0  # running at 07:00, before the list is due
    receiver.pages.clear()
    receiver.paths.clear()
    yield harness
    harness.close()


def test_lists_go_out_once_at_0730_beijing(h: Harness, receiver: PageReceiver) -> None:
    """Nothing at 07:00; at 07:30 each constable gets their ponds and the area officer the
    summary of the grids; a second check the same day sends nothing."""
    assert h.svc.patrol.check() == 0
    h.clock.advance(30 * 60)
    assert h.svc.patrol.check() == 3
    assert h.svc.patrol.check() == 0
    assert sorted(receiver.paths) == ["/guo-yong", "/kang-donghai", "/liu-min"]
    guo = receiver.for_path("guo-yong")[0]
    assert guo["title"] == "【巡查单】7月2日 2处水域，2项需处理"  # lifebuoy, camera
    text = guo["message"]
    assert text.splitlines()[0] == "郭勇，早上好。今日巡查单（2026-07-02，共2处水域）"
    assert "■ 禾源山塘（禾源村）" in text and "■ 北塘（北村）" in text
    assert "  器材：救生圈缺失（自 07-01 01:00）" in text
    assert "  器材在位：救生绳" in text
    assert "  设备 heyuan-01：离线（计划停机，自 07-02 07:00）" in text
    assert "  设备 beitang-01：在线" in text
    assert "  昨日告警 07-01 19:00 儿童在水中：误报" in text
    assert "  待技术员处理：摄像头故障（自 07-01 19:00）" in text
    assert "下塘" not in text  # kang-donghai's grid
    kang = receiver.for_path("kang-donghai")[0]["message"]
    assert "  设备 xiatang-01：离线（失联，自 07-02 07:00）" in kang
    officer = receiver.for_path("liu-min")[0]
    assert officer["title"] == "【巡查汇总】7月2日 2个网格"
    assert ("■ 共裕网格（郭勇）：水域2处，器材缺失1件，设备异常离线0台，昨日告警1起（误报1起），"
            "未处理告警0起") in officer["message"]
    assert "■ 东山网格（康东海）：水域1处，器材缺失0件，设备异常离线1台" in officer["message"]
    with h.svc.sessions() as s:
        runs = s.scalars(select(PatrolRun)).all()
        assert {(r.person_id, r.status, r.channel) for r in runs if r.day == "2026-07-02"} == {
            ("guo-yong", "sent", "json"), ("kang-donghai", "sent", "json"),
            ("liu-min", "sent", "json")}


def test_list_by_email_through_a_real_smtp_server(h: Harness, smtp) -> None:  # noqa: F811
    """The same channels as pages: a constable whose first channel is email gets it there."""
    port, box = smtp
    with h.svc.sessions() as s, s.begin():
        s.get(Person, "guo-yong").notify = [
            f"mailto://127.0.0.1:{port}?to=guo@example.com&from=pw@example.com&mode=insecure"]
    h.clock.advance(30 * 60)
    h.svc.patrol.check()
    with box.cond:
        assert box.cond.wait_for(lambda: box.messages, 10)
    msg = message_from_bytes(box.messages[0])
    assert str(make_header(decode_header(msg["Subject"]))).startswith("【巡查单】7月2日")
    part = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
    text = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
    assert "器材：救生圈缺失（自 07-01 01:00）" in [ln.strip() for ln in text.splitlines()]


def test_failed_and_skipped_days_show_on_the_admin_page(tmp_path: Path,
                                                         receiver: PageReceiver) -> None:
    """A channel that fails (retried, then nothing left) is a failed run; days the server was
    not running, and a start too late in the day, are skipped runs; the admin page lists them."""
    h, c = make_site(tmp_path, receiver, paging={"retries": 1, "retry_wait_s": 0})
    try:
        with h.svc.sessions() as s, s.begin():
            s.get(Person, "kang-donghai").notify = ["json://127.0.0.1:9/dead"]
        h.clock.set(MORNING)
        assert h.svc.patrol.check() == 0
        h.clock.set(MORNING + timedelta(minutes=30))
        assert h.svc.patrol.check() == 2
        h.clock.set(MORNING + timedelta(days=3, hours=5))  # 07-05 12:00: too late for today
        assert h.svc.patrol.check() == 0
        with h.svc.sessions() as s:
            runs = {(r.day, r.person_id): r for r in s.scalars(select(PatrolRun))}
        assert runs[("2026-07-02", "kang-donghai")].status == "failed"
        assert runs[("2026-07-02", "kang-donghai")].detail == "2次尝试均失败"
        assert runs[("2026-07-03", "guo-yong")].status == "skipped"
        assert runs[("2026-07-04", "liu-min")].status == "skipped"
        assert runs[("2026-07-05", "guo-yong")].status == "skipped"
        assert "晚于发送时间" in runs[("2026-07-05", "guo-yong")].detail
        as_user(c, "admin")
        page = c.get("/admin").text
        assert 'id="patrol-runs"' in page
        assert 'data-day="2026-07-02" data-person="kang-donghai" data-status="failed"' in page
        assert 'data-day="2026-07-03" data-person="guo-yong" data-status="skipped"' in page
        assert "未发送（跳过）" in page and "发送失败" in page
    finally:
        c.close()
        h.close()


def test_roster_swap_sends_the_list_to_who_is_on_duty(h: Harness,
                                                      receiver: PageReceiver) -> None:
    """A rostered stand-in gets the grid's list; the usual constable none for it."""
    from server.core.db import RosterEntry
    with h.svc.sessions() as s, s.begin():
        s.add(RosterEntry(grid_id="gongyu", person_id="kang-donghai", role="primary",
                          starts=MORNING - timedelta(days=1), ends=MORNING + timedelta(days=1)))
    h.clock.advance(30 * 60)
    h.svc.patrol.check()
    assert "/guo-yong" not in receiver.paths
    kang = receiver.for_path("kang-donghai")[0]["message"]
    assert "■ 禾源山塘（禾源村）" in kang and "■ 下塘（下村）" in kang


def test_patrol_config_is_checked() -> None:
    """A bad time names the field."""
    from server.core.config import ConfigError, parse_config
    with pytest.raises(ConfigError, match="patrol.at"):
        parse_config({"environment": "dev", "patrol": {"at": "7:30"}})


def test_failed_list_is_tried_again_every_15_minutes(h: Harness, receiver: PageReceiver) -> None:
    """A list that reached nobody is tried again after 15 min (within the day's window) and
    recorded sent once a channel works; the tries add up in the detail."""
    with h.svc.sessions() as s, s.begin():
        s.get(Person, "guo-yong").notify = ["json://127.0.0.1:9/dead"]
    h.clock.advance(30 * 60)
    assert h.svc.patrol.check() == 2
    h.clock.advance(14 * 60)
    assert h.svc.patrol.check() == 0
    h.clock.advance(60)
    assert h.svc.patrol.check() == 0  # still dead: failed again
    with h.svc.sessions() as s:
        run = s.scalars(select(PatrolRun).where(PatrolRun.person_id == "guo-yong",
                                                PatrolRun.day == "2026-07-02")).one()
        assert (run.status, run.detail) == ("failed", "2次尝试均失败")
    with h.svc.sessions() as s, s.begin():
        s.get(Person, "guo-yong").notify = [receiver.url("guo-yong")]
    h.clock.advance(15 * 60)
    assert h.svc.patrol.check() == 1
    assert len(receiver.for_path("guo-yong")) == 1
    with h.svc.sessions() as s:
        run = s.scalars(select(PatrolRun).where(PatrolRun.person_id == "guo-yong",
                                                PatrolRun.day == "2026-07-02")).one()
        assert (run.status, run.channel) == ("sent", "json")


def test_fresh_installation_started_late_sends_nothing_today(tmp_path: Path,
                                                             receiver: PageReceiver) -> None:
    """First start at 09:00 on a new database: no list today (recorded as skipped, so the admin
    page says why), no skipped days before the installation; the next morning it goes out."""
    h = Harness(tmp_path, receiver, paging={"retries": 0, "retry_wait_s": 0})
    try:
        h.clock.set(MORNING + timedelta(hours=2))
        assert h.svc.patrol.check() == 0
        with h.svc.sessions() as s:
            runs = s.scalars(select(PatrolRun)).all()
        assert {r.day for r in runs} == {"2026-07-02"}
        assert {r.status for r in runs} == {"skipped"}
        assert "首次启动晚于发送时间" in runs[0].detail
        h.clock.set(MORNING + timedelta(days=1, minutes=30))  # a restart at 07:30 next day
        restarted = Patrol(h.cfg.patrol, h.svc.sessions, h.clock,
                           lambda urls, title, body: h.svc.pager.reach(urls, title, body, None))
        assert restarted.check() == 3
        assert receiver.pages
    finally:
        h.close()
