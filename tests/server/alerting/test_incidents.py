"""One incident per pond: critical events of any kind fold, worse kinds page again at once and
restart escalation; an acknowledgement without 已到场 comes back (fake clock, real receivers)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from server.alerting import alerts
from server.core.db import Alert, Delivery, TimelineEntry
from tests.server.alerting.test_escalation import Harness
from tests.server.conftest import PageReceiver

BOXES = [(0.1, 0.5, 0.2, 0.9), (0.6, 0.5, 0.7, 0.9)]


@pytest.fixture
def h(tmp_path: Path, receiver: PageReceiver):
    harness = Harness(tmp_path, receiver)
    yield harness
    harness.close()


def _act(h: Harness, action: str, by: str = "guo-yong", outcome: str | None = None) -> None:
    with h.svc.sessions() as s:
        a = s.scalars(select(Alert)).one()
        assert alerts.act(s, a, action, by, h.clock.now(), outcome, 300)
        s.commit()


def test_child_from_bank_into_water_then_under_is_one_incident_three_pages(h: Harness) -> None:
    """Bank → water → gone under: one alert whose kind climbs, three pages to the constable
    (new, in water, submerged), each saying it got worse, and one timeline."""
    h.event("child_near_water", zone="bank", stature_m=1.1, boxes=BOXES[:1])
    assert h.tick() == 1
    h.clock.advance(5)
    h.event("person_in_water", zone="water", child=True, stature_m=1.1, boxes=BOXES)
    h.event("child_near_water", zone="bank", stature_m=1.1)  # a late bank repeat: no upgrade
    assert h.tick() == 1
    h.clock.advance(5)
    h.event("person_submerged", zone="water", child=True)
    assert h.tick() == 1
    assert h.tick(30) == 0  # step 1 still counts from the step reached: 60 s after the last
    with h.svc.sessions() as s:
        only = s.scalars(select(Alert)).one()
        assert only.kind == "person_submerged" and only.event_count == 4
        assert only.child is True and only.people_seen == 2
        kinds = [r.detail for r in s.scalars(select(TimelineEntry).where(
            TimelineEntry.kind == "upgrade").order_by(TimelineEntry.id))]
        assert kinds == ["child_near_water -> person_in_water",
                         "person_in_water -> person_submerged"]
        reasons = [d.reason for d in s.scalars(select(Delivery).order_by(Delivery.id))]
        assert reasons == ["step", "upgrade", "upgrade"]
    assert h.paged() == ["guo-yong"] * 3
    titles = [p["title"] for p in h.receiver.pages]
    assert titles == ["【紧急】禾源山塘：儿童在岸边", "【紧急·升级】禾源山塘：儿童已落水",
                      "【紧急·升级】禾源山塘：儿童已没入水中"]
    first_lines = [p["message"].splitlines()[0] for p in h.receiver.pages]
    assert first_lines == ["儿童在岸边｜禾源山塘（禾源村）", "儿童已落水｜禾源山塘（禾源村）",
                           "儿童已没入水中｜禾源山塘（禾源村）"]
    assert "情况加重：此前为儿童已落水" not in h.receiver.pages[2]["message"]
    assert "情况加重：此前为儿童在水中" in h.receiver.pages[2]["message"]
    assert "画面中共2人" in h.receiver.pages[1]["message"]
    assert h.tick(30) == 1  # 60 s after the re-based step 0: step 1
    assert sorted(h.paged()[3:]) == ["guo-yong", "kang-donghai", "liu-min"]


def test_milder_event_folds_without_a_page(h: Harness) -> None:
    """An SOS after a person in the water joins the incident; nobody is paged again."""
    h.event("person_in_water", zone="water", child=False)
    h.tick()
    h.event("sos")
    assert h.tick() == 0
    with h.svc.sessions() as s:
        a = s.scalars(select(Alert)).one()
        assert a.kind == "person_in_water" and a.event_count == 2 and a.upgraded_at is None
    assert h.receiver.pages[0]["title"] == "【紧急】禾源山塘：成人在水中"


def test_other_pond_and_resolved_incident_open_new_alerts(h: Harness) -> None:
    """Folding is per pond, and a resolved incident takes nothing more."""
    h.event("child_near_water")
    h.event("child_near_water", node="xiatang-01", pond="xiatang")
    h.tick()
    with h.svc.sessions() as s:
        a = s.scalars(select(Alert).where(Alert.pond_id == "heyuan-shantang")).one()
        alerts.act(s, a, "resolve", "guo-yong", h.clock.now(), "false_alarm")
        s.commit()
    h.event("person_in_water")
    with h.svc.sessions() as s:
        assert len(s.scalars(select(Alert)).all()) == 3


def test_upgrade_after_acknowledgement_needs_a_new_one(h: Harness) -> None:
    """Acknowledged on the bank, then the child is in the water: paged at once, escalation
    runs again until someone acknowledges the worse situation."""
    h.event("child_near_water")
    h.tick()
    _act(h, "ack")
    h.clock.advance(20)
    h.event("person_in_water", child=True)
    assert h.alert().state == "notified"
    assert h.tick() == 1 and h.paged() == ["guo-yong", "guo-yong"]
    assert h.tick(60) == 1
    assert sorted(h.paged()[2:]) == ["guo-yong", "kang-donghai", "liu-min"]
    _act(h, "ack")
    assert h.alert().state == "acknowledged"


def test_upgrade_while_on_scene_pages_once_without_escalation(h: Harness) -> None:
    """The constable is there when someone goes under: everyone paged so far hears it once."""
    h.event("person_in_water")
    h.tick()
    _act(h, "ack")
    _act(h, "on_scene")
    h.event("person_submerged")
    assert h.alert().state == "on_scene"
    assert h.tick() == 1 and h.paged() == ["guo-yong", "guo-yong"]
    assert h.tick(3600) == 0


def test_acknowledged_without_on_scene_repages_constable_and_next_step(h: Harness) -> None:
    """已收到 at 10 s, nobody 已到场 by 310 s: the constable again plus step 1's people; then
    every on_scene_timeout_s one step further; 已到场 stops it."""
    h.event("person_in_water")
    h.tick()
    h.clock.advance(10)
    _act(h, "ack")
    assert h.tick(299) == 0
    assert h.tick(1) == 1
    assert sorted(h.paged()[1:]) == ["guo-yong", "kang-donghai", "liu-min"]
    page = h.receiver.for_path("guo-yong")[-1]
    assert page["title"].startswith("【紧急·未到场】")
    assert "至今无人到场" in page["message"]
    assert h.tick(300) == 1
    assert sorted(h.paged()[4:]) == ["duty-quanjiang", "guo-yong"]
    _act(h, "on_scene")
    assert h.tick(3600) == 0
    assert len(h.paged()) == 6


def test_reminder_queued_before_on_scene_is_skipped(h: Harness) -> None:
    """已到场 between the reminder being queued and sent: the reminder is not sent."""
    h.event("person_in_water")
    h.tick()
    _act(h, "ack")
    h.clock.advance(300)
    h.svc.pager.send = lambda *a: pytest.fail("sent after 已到场")  # type: ignore[assignment]
    with h.svc.sessions() as s, s.begin():
        a = s.scalars(select(Alert)).one()
        ids = []
        for d in h.svc.escalator._fire(s, a, h.clock.now()):  # noqa: SLF001
            s.flush()
            ids.append(d.id)
    h.clock.advance(1)
    _act(h, "on_scene")
    for did in ids:
        assert h.svc.pager.deliver(did) is False
    with h.svc.sessions() as s:
        assert {d.status for d in s.scalars(select(Delivery).where(Delivery.id.in_(ids)))} == {
            "skipped"}


def test_unresolved_incident_quiet_for_ten_minutes_is_not_joined(h: Harness) -> None:
    """A visit that goes on (re-announced, then ended) keeps its incident; ten quiet minutes
    later a new visit opens a new alert even if nobody resolved the old one."""
    first = h.event("child_near_water")
    h.tick()
    h.clock.advance(540)
    h.event("child_near_water", repeat_of=first.id)
    h.clock.advance(540)
    h.event("event_end", ref=first.id, reason="clear")
    h.clock.advance(540)
    h.event("person_in_water")
    with h.svc.sessions() as s:
        assert len(s.scalars(select(Alert)).all()) == 1
    h.clock.advance(601)
    h.event("person_in_water")
    with h.svc.sessions() as s:
        assert [a.kind for a in s.scalars(select(Alert).order_by(Alert.id))] == [
            "person_in_water", "person_in_water"]


def test_timeline_speaks_upgrades_in_words() -> None:
    """The alert page's timeline names an upgrade and the re-page in Chinese."""
    from server.api.i18n import describe
    assert describe("child_near_water -> person_in_water", "zh", {}) == (
        "情况加重：儿童靠近水边 → 有人在水中，立即重新通知")
    assert describe("step 0 (upgrade): constable -> guo-yong", "zh", {"guo-yong": "郭勇"}) == (
        "情况加重，从第 1 级重新通知网格民警：郭勇")
    assert describe("step 1 (on_scene_overdue): constable,backup -> a,b", "en", {}).startswith(
        "Acknowledged, nobody on scene: step 2")
    assert describe("folded event abc (sos)", "zh", {}) == "又一次事件并入此告警（求救按钮被按下）"


def test_incident_window_is_configured(tmp_path: Path, receiver: PageReceiver) -> None:
    """escalation.incident_clear_s: 60 s of quiet is enough for a new visit's alert."""
    h = Harness(tmp_path, receiver, escalation={"incident_clear_s": 60})
    try:
        h.event("child_near_water")
        h.clock.advance(59)
        h.event("person_in_water")
        h.clock.advance(61)
        h.event("person_in_water")
        with h.svc.sessions() as s:
            assert [a.event_count for a in s.scalars(select(Alert).order_by(Alert.id))] == [2, 1]
    finally:
        h.close()


def test_link_page_and_api_lead_with_the_same_words(h: Harness) -> None:
    """The page the link opens says 儿童已落水 too; the JSON API carries the headline, who and
    how many people."""
    import re

    from fastapi.testclient import TestClient

    from server.app import create_app
    h.event("child_near_water", boxes=BOXES)
    h.tick()
    h.event("person_in_water", child=True)
    h.tick()
    token = re.search(r"/a/(\S+)", h.receiver.pages[-1]["message"]).group(1)
    with TestClient(create_app(h.svc)) as c:
        page = c.get(f"/a/{token}").text
    assert "<h1>禾源山塘：儿童已落水</h1>" in page
    from server.api.queries import alert_dict
    with h.svc.sessions() as s:
        a = s.scalars(select(Alert)).one()
        d = alert_dict(a, None)
    assert (d["headline"], d["child"], d["people_seen"], d["upgraded_from"]) == (
        "儿童已落水", True, 2, "child_near_water")


def test_quiet_hours_hold_tasks_never_urgent_pages(tmp_path: Path,
                                                   receiver: PageReceiver) -> None:
    """paging.quiet_hours 22:00-07:00 (Beijing): a lifebuoy missing at 23:00 pages the
    constable at 07:00; a child in the water at 23:00 pages at once."""
    from datetime import UTC, datetime
    h = Harness(tmp_path, receiver, paging={"quiet_hours": "22:00-07:00"})
    try:
        h.clock.set(datetime(2026, 7, 1, 15, 0, tzinfo=UTC))  # 23:00 Beijing
        h.event("equipment_missing", item="lifebuoy")
        h.event("person_in_water", node="xiatang-01", pond="xiatang", child=True)
        h.tick()
        assert h.paged() == ["kang-donghai"]  # the urgent page only
        h.tick(7 * 3600 + 59 * 60)  # 06:59 (the urgent alert escalates meanwhile)
        assert [p for p in receiver.pages if p["title"].startswith("【待办】")] == []
        h.tick(60)  # 07:00
        tasks = [p for p in receiver.pages if p["title"].startswith("【待办】")]
        assert [t["title"] for t in tasks] == ["【待办】禾源山塘：救生圈缺失"]
        assert "/guo-yong" in receiver.paths
    finally:
        h.close()


def test_quiet_until() -> None:
    """Spanning midnight or not; outside the hours nothing is held."""
    from datetime import UTC, datetime

    from server.alerting.wording import quiet_until
    at = lambda hh, mm=0: datetime(2026, 7, 1, hh, mm, tzinfo=UTC) - timedelta(hours=8)  # noqa: E731
    assert quiet_until("22:00-07:00", at(23)) == at(7) + timedelta(days=1)
    assert quiet_until("22:00-07:00", at(6, 59)) == at(7)
    assert quiet_until("22:00-07:00", at(7)) is None
    assert quiet_until("12:00-14:00", at(13)) == at(14)
    assert quiet_until("12:00-14:00", at(15)) is None
    assert quiet_until(None, at(23)) is None


def _act_on(h: Harness, alert_id: int, action: str) -> None:
    with h.svc.sessions() as s, s.begin():
        assert alerts.act(s, s.get(Alert, alert_id), action, "guo-yong", h.clock.now(), None, 300)


def _deliveries(h: Harness, alert_id: int) -> list[tuple[str, str]]:
    with h.svc.sessions() as s:
        return [(d.person_id, d.reason) for d in s.scalars(
            select(Delivery).where(Delivery.alert_id == alert_id).order_by(Delivery.id))]


@pytest.mark.parametrize("acted", [("ack",), ("ack", "on_scene")])
def test_second_child_hours_after_an_acknowledged_visit_is_a_new_alert(
        h: Harness, acted: tuple[str, ...]) -> None:
    """已收到 (or 已到场) and never resolved; the child left; three hours later a second child:
    a new alert, paged to the constable from the first step."""
    first = h.event("child_near_water", track_id=1)
    h.tick()
    old = h.alert().id
    for action in acted:
        _act_on(h, old, action)
    h.clock.advance(30)
    h.event("event_end", ref=first.id, reason="clear")
    h.clock.advance(3 * 3600)
    h.event("child_near_water", track_id=2)
    new = h.alert()
    assert new.id != old and (new.state, new.event_count) == ("open", 1)
    assert h.alert(old).state == ("on_scene" if "on_scene" in acted else "acknowledged")
    h.tick()
    assert _deliveries(h, new.id) == [("guo-yong", "step")]


@pytest.mark.parametrize("acted", [("ack",), ("ack", "on_scene")])
def test_new_child_long_after_an_acknowledgement_is_paged_though_the_pond_never_went_quiet(
        h: Harness, acted: tuple[str, ...]) -> None:
    """The first child stays for hours (re-announced every 120 s, so the incident never goes
    quiet): the re-announcements and a second child within incident_clear_s of 已收到/已到场
    join the acknowledged alert; a child who comes later is not swallowed by the old
    acknowledgement: a new alert pages the constable."""
    first = h.event("child_near_water", track_id=1)
    h.tick()
    old = h.alert().id
    for action in acted:
        _act_on(h, old, action)
    h.clock.advance(300)
    h.event("child_near_water", track_id=2)  # the constable is on his way or there: joins
    for _ in range(90):  # three hours of the first child re-announced: all join
        h.clock.advance(120)
        h.event("child_near_water", track_id=1, repeat_of=first.id)
    assert h.alert().id == old and h.alert(old).event_count == 92
    h.event("child_near_water", track_id=3)  # a child who came since
    new = h.alert()
    assert new.id != old and (new.state, new.event_count) == ("open", 1)
    h.tick()
    assert _deliveries(h, new.id) == [("guo-yong", "step")]
