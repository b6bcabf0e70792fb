"""Pages through the real app on SQLite: language, words, live hub, fleet, admin, map, report."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from protocol.payloads import Health, Status, encode
from protocol.topics import Topics
from server.access import auth
from server.alerting import live
from server.app import create_app
from server.core.db import (
    Alert,
    EquipmentState,
    HealthSample,
    ModelAssignment,
    Person,
    Pond,
    RosterEntry,
    ServerModel,
)
from server.fleet import health
from server.link.ingest import Inbound
from tests.server.alerting.test_escalation import Harness
from tests.server.api.test_web import _login
from tests.server.conftest import PageReceiver

USERS = {"admin": ("admin-pass-1", "admin", None), "guo": ("guo-pass-12", "constable", "guo-yong"),
         "tech": ("tech-pass-12", "technician", "tech-wang"),
         "viewer": ("viewer-pass-1", "viewer", "guo-yong")}


def make_site(tmp_path: Path, receiver: PageReceiver, **extra: Any) -> tuple[Harness, TestClient]:
    """Services on a fake clock, the users above, and a client for the app."""
    h = Harness(tmp_path, receiver, **extra)
    with h.svc.sessions() as s, s.begin():
        s.get(Person, "tech-wang").stations = ["quanjiang"]
        for name, (pw, role, person) in USERS.items():
            auth.set_user(s, name, pw, role, person)
    return h, TestClient(create_app(h.svc), follow_redirects=False)


@pytest.fixture
def site(tmp_path: Path, receiver: PageReceiver) -> Iterator[tuple[Harness, TestClient]]:
    """The default site."""
    h, c = make_site(tmp_path, receiver)
    yield h, c
    c.close()
    h.close()


def as_user(c: TestClient, name: str) -> str:
    """Log in as one of USERS; the session's CSRF token."""
    c.cookies.clear()
    return _login(c, name, USERS[name][0])


def test_chinese_first_english_kept_in_a_cookie(site) -> None:
    h, c = site
    as_user(c, "guo")
    assert "<h1>告警" in c.get("/").text
    r = c.get("/?lang=en")
    assert "<h1>Alerts" in r.text and r.cookies.get("pw_lang") == "en"
    assert "Ponds and rescue kit" in c.get("/ponds").text
    assert "<h1>告警" in c.get("/?lang=zh").text
    assert "池塘与器材" in c.get("/ponds").text


def test_alert_page_speaks_words_not_ids(site) -> None:
    h, c = site
    h.event(stature_m=1.1)
    h.tick()
    aid = h.alert().id
    as_user(c, "guo")
    page = c.get(f"/alerts/{aid}").text
    assert "儿童靠近水边" in page and "已通知" in page
    assert "第 1 级：通知网格民警：郭勇" in page  # was "step 0: constable -> guo-yong"
    assert "step 0" not in page and "child_near_water" not in page
    en = c.get(f"/alerts/{aid}?lang=en").text
    assert "Child near water" in en and "Step 1: paging constable: 郭勇" in en


def test_actions_only_for_those_who_may_act(site) -> None:
    h, c = site
    h.event()
    aid = h.alert().id
    token = as_user(c, "viewer")
    assert 'value="ack"' not in c.get(f"/alerts/{aid}").text
    assert c.post(f"/alerts/{aid}", data={"action": "ack", "csrf_token": token}).status_code == 403
    token = as_user(c, "guo")
    assert c.post(f"/alerts/{aid}", data={"action": "ack"}).status_code == 403  # no CSRF token
    r = c.post(f"/alerts/{aid}", data={"action": "ack", "csrf_token": token})
    assert r.status_code == 303 and h.alert(aid).acked_by == "guo"


def test_open_alerts_come_first(site) -> None:
    h, c = site
    h.event()
    first = h.alert().id
    h.event(pond="xiatang", node="xiatang-01")
    second = h.alert().id
    with h.svc.sessions() as s, s.begin():
        from server.alerting import alerts
        alerts.act(s, s.get(Alert, second), "resolve", "guo", h.clock.now(), "false_alarm")
    as_user(c, "admin")
    page = c.get("/").text
    assert page.index(f'data-alert-id="{first}"') < page.index(f'data-alert-id="{second}"')


def test_live_hub_publishes_only_committed_changes(site) -> None:
    h, _ = site
    hub = live.Hub()
    live.attach(h.svc.sessions, hub)

    async def run() -> list[Any]:
        sub = hub.subscribe()
        assert sub is not None
        h.event()  # commits an alert in this thread
        got = [await sub.next(5)]
        with h.svc.sessions() as s:  # a change rolled back is never announced
            a = s.get(Alert, got[0].alert_id)
            a.state = "acknowledged"
            s.flush()
            s.rollback()
        hub.close()
        got.append(await sub.next(5))
        return got

    changes = asyncio.run(run())
    assert changes[0] == live.Change(h.alert().id, "heyuan-shantang")
    assert changes[1] is None  # the hub closed; nothing in between
    assert hub.subscribe is not None and hub.subscribers == 0


def test_fleet_for_technicians_and_their_buttons(site) -> None:
    h, c = site
    as_user(c, "guo")
    assert c.get("/fleet").status_code == 403
    assert c.get("/fleet/heyuan-01").status_code == 403
    token = as_user(c, "tech")
    assert "heyuan-01" in c.get("/fleet").text
    assert c.get("/fleet/ghost-01").status_code == 404
    r = c.post("/fleet/heyuan-01/commands", data={"cmd": "format_disk", "csrf_token": token})
    assert r.status_code == 422 and "format_disk" in r.text
    r = c.post("/fleet/heyuan-01/commands", data={"cmd": "selftest", "csrf_token": token})
    assert r.status_code == 503 and "broker" in r.text  # no broker in this harness
    assert 'value="logs"' in c.get("/fleet/heyuan-01").text  # the server's own path for logs
    r = c.post("/fleet/heyuan-01/commands", data={"cmd": "logs", "csrf_token": token})
    assert r.status_code == 503, "the button sends it (the JSON API may not)"


def test_health_history_is_bounded_and_charted(site) -> None:
    h, c = site
    with h.svc.sessions() as s, s.begin():
        for i in range(10):
            health.record(s, "heyuan-01", Health(ts=h.clock.now(), version="1",
                                                         fps=4 + i / 10, temperature_c=50),
                                  h.clock.now(), keep_days=1)
            h.clock.advance(3 * 3600)
        assert s.query(HealthSample).count() == 9  # samples over 27 h, older than 24 h dropped
    as_user(c, "tech")
    page = c.get("/fleet/heyuan-01?hours=24").text
    assert 'data-field="fps" data-points="8"' in page
    assert 'data-field="temperature_c"' in page


def test_admin_edits_with_import_validation(site) -> None:
    h, c = site
    token = as_user(c, "guo")
    assert c.get("/admin").status_code == 403
    assert c.post("/admin/ponds", data={"id": "x", "csrf_token": token}).status_code == 403
    token = as_user(c, "admin")
    base = {"id": "heyuan-shantang", "name": "禾源新塘", "village": "禾源村", "grid": "gongyu",
            "lat": "26.33", "lon": "114.52", "csrf_token": token}
    r = c.post("/admin/ponds", data={**base, "lat": "95"})
    assert r.status_code == 422 and "ponds.lat" in r.text and 'value="95"' in r.text
    r = c.post("/admin/ponds", data={**base, "grid": "nowhere"})
    assert r.status_code == 422 and "unknown grid" in r.text
    assert c.post("/admin/ponds", data=base).status_code == 303
    with h.svc.sessions() as s:
        assert s.get(Pond, "heyuan-shantang").name == "禾源新塘"
    roster = {"grid": "gongyu", "person": "kang-donghai", "role": "primary",
              "starts": "2026-07-01T08:00:00+08:00", "ends": "2026-07-02T08:00:00+08:00",
              "csrf_token": token}
    assert c.post("/admin/rosters", data=roster).status_code == 303
    assert c.post("/admin/rosters", data={**roster, "role": "backup", "person": "liu-min"}
                  ).status_code == 303
    with h.svc.sessions() as s:
        assert s.query(RosterEntry).filter(RosterEntry.grid_id == "gongyu").count() == 2
    r = c.post("/admin/rosters", data={**roster, "starts": "2026-07-01T08:00:00"})
    assert r.status_code == 422 and "timezone" in r.text
    with h.svc.sessions() as s:
        first = s.query(RosterEntry).filter(RosterEntry.person_id == "kang-donghai").one().id
    assert c.post(f"/admin/rosters/{first}/delete", data={"csrf_token": token}
                  ).status_code == 303
    assert c.post(f"/admin/rosters/{first}/delete", data={"csrf_token": token}
                  ).status_code == 404
    with h.svc.sessions() as s:
        assert [r.person_id for r in s.query(RosterEntry)] == ["liu-min"]


def test_registry_export_imports_back_and_bad_files_change_nothing(site) -> None:
    h, c = site
    token = as_user(c, "admin")
    text = c.get("/admin/export.yaml").text
    data = yaml.safe_load(text)
    assert {p["id"] for p in data["ponds"]} == {"heyuan-shantang", "xiatang", "beitang"}
    r = c.post("/admin-import", data={"csrf_token": token},
               files={"file": ("registry.yaml", text.replace("禾源山塘", "禾源东塘"))})
    assert r.status_code == 303
    with h.svc.sessions() as s:
        assert s.get(Pond, "heyuan-shantang").name == "禾源东塘"
    bad = "id,name,grid\nnew-pond,新塘,gongyu\nother,,gongyu\n"
    r = c.post("/admin-import", data={"csrf_token": token}, files={"file": ("ponds.csv", bad)})
    assert r.status_code == 422 and "ponds.csv line 3" in r.text and "ponds.name" in r.text
    with h.svc.sessions() as s:
        assert s.get(Pond, "new-pond") is None  # all or nothing
    r = c.post("/admin-import", data={"csrf_token": token}, files={"file": ("x.txt", "a")})
    assert r.status_code == 422 and ".yaml" in r.text
    good = "id,name,grid,lat,lon\nnew-pond,新塘,gongyu,26.4,114.6\n"
    r = c.post("/admin-import", data={"csrf_token": token}, files={"file": ("ponds.csv", good)})
    assert r.status_code == 303
    assert "新塘" in c.get("/map").text


def test_map_plots_coordinates_and_uses_tiles_when_configured(site, tmp_path: Path,
                                                               receiver: PageReceiver) -> None:
    h, c = site
    as_user(c, "admin")
    page = c.get("/map").text
    assert page.count('class="pond"') == 2 and "<image" not in page
    assert "°E" in page and "°N" in page  # the plain plot has a graticule
    assert 'data-pond="beitang"' in page.split('id="unplaced"')[1]  # no coordinates
    (tmp_path / "tiles").mkdir()
    h2, c2 = make_site(tmp_path / "tiles", receiver,
                       map_tile_url="http://127.0.0.1:9/tiles/{z}/{x}/{y}.png")
    try:
        as_user(c2, "admin")
        page = c2.get("/map").text
        assert '<image class="tile" href="http://127.0.0.1:9/tiles/' in page
        assert "°E" not in page
    finally:
        c2.close()
        h2.close()


def test_report_weekly_counts_missing_kit_and_csv(site) -> None:
    h, c = site
    h.event()
    h.clock.advance(7 * 86400)
    h.event("person_in_water")
    h.event("child_near_water", pond="xiatang", node="xiatang-01")
    with h.svc.sessions() as s, s.begin():
        s.get(Pond, "xiatang").name = "=HYPERLINK(1)"
        s.add(EquipmentState(pond_id="heyuan-shantang", item="lifebuoy", state="missing",
                             since=h.clock.now() - timedelta(hours=2), updated_at=h.clock.now()))
    as_user(c, "guo")
    page = c.get("/report").text
    assert 'id="weekly"' in page and 'data-pond="heyuan-shantang"' in page
    assert 'data-item="lifebuoy"' in page and "救生圈" in page
    csv_text = c.get("/report-weekly.csv").text
    lines = csv_text.lstrip("\ufeff").splitlines()
    heyuan = next(ln for ln in lines if ln.startswith("heyuan-shantang"))
    assert heyuan.endswith(",2") and ",1," in heyuan
    assert "'=HYPERLINK(1)" in csv_text
    assert "1分钟确认" in page.split('id="chart"')[1]
    assert "Ack ≤ 1 min" in c.get("/report?lang=en").text.split('id="chart"')[1]


def test_ponds_with_nodes_never_heard_are_not_called_watched(site) -> None:
    h, c = site
    as_user(c, "guo")
    page = c.get("/ponds").text
    row = page.split('id="pond-beitang"')[1].split("</tr>")[0]
    assert 'data-watched="false"' in row and "设备从未上线" in row
    h.event(pond="beitang", node="beitang-01")
    row = c.get("/ponds").text.split('id="pond-beitang"')[1].split("</tr>")[0]
    assert 'data-watched="true"' in row and "儿童靠近水边" in row  # the last event


def test_live_stream_filters_by_scope_and_ends_with_the_session(config, mosquitto,
                                                               monkeypatch) -> None:
    import httpx

    from server.api import alert_pages
    from server.core.db import Grid, WebSession
    from server.runner import Server
    from tests.server.api.test_web import login_form
    from tests.server.conftest import FakeNode

    monkeypatch.setattr(alert_pages, "KEEPALIVE_S", 0.3)
    heyuan, xiatang = FakeNode(mosquitto, "heyuan-01"), FakeNode(mosquitto, "xiatang-01")
    with Server(config) as srv, httpx.Client(base_url=srv.url) as c:
        assert srv.services.ingest.connected.wait(10)
        with srv.services.sessions() as s, s.begin():
            s.get(Grid, "gongyu").backup_id = None  # kang keeps only his own grid, 东山
            auth.set_user(s, "kang", "kang-pass-12", "constable", "kang-donghai")
        assert login_form(c, "kang", "kang-pass-12").status_code == 303
        try:
            with c.stream("GET", "/live/alerts", timeout=10) as r:
                lines = r.iter_lines()
                assert next(lines).startswith("retry:")
                heyuan.event()                      # 共裕: not kang's
                xiatang.event(pond_id="xiatang")    # 东山: kang's, committed after
                first = next(line for line in lines if line.startswith("data:"))
                with srv.services.sessions() as s:
                    mine = s.query(Alert).filter(Alert.pond_id == "xiatang").one().id
                assert first == f'data: {{"id": {mine}}}'
                with srv.services.sessions() as s, s.begin():
                    s.query(WebSession).delete()    # logged out elsewhere
                assert "event: logout" in list(lines)  # and the stream ends by itself
        finally:
            heyuan.close()
            xiatang.close()


def test_a_reader_far_behind_is_told_to_resync() -> None:
    hub = live.Hub()

    async def run() -> list[Any]:
        sub = hub.subscribe()
        assert sub is not None
        hub.publish([live.Change(i, "p") for i in range(live.QUEUE_SIZE + 5)])
        await asyncio.sleep(0)  # let the loop run the hand-offs
        got = [await sub.next(1), await sub.next(0.05)]
        hub.publish([live.Change(999, "p")])
        got.append(await sub.next(1))
        return got

    assert asyncio.run(run()) == [True, False, live.Change(999, "p")]


def test_kit_alerts_name_the_item_in_both_languages(site) -> None:
    h, c = site
    h.event("equipment_missing", item="lifebuoy")
    aid = h.alert().id
    as_user(c, "guo")
    assert "救生圈缺失" in c.get(f"/alerts/{aid}/row").text
    assert "Lifebuoy missing" in c.get(f"/alerts/{aid}?lang=en").text


def _say(h: Harness, topic: str, payload: bytes) -> None:
    """A message from a node, through the real ingest code path."""
    h.ing.process(Inbound(topic, payload, 1, 1))


def _status(h: Harness, node: str, state: str, reason: str | None = None) -> None:
    _say(h, Topics().status(node), encode(Status(state=state, ts=h.clock.now(), version="1",
                                                 reason=reason)))


def _cell(page: str, marker: str, end: str = "</tr>") -> str:
    """The text (tags dropped) from marker to end."""
    return re.sub(r"<[^>]+>", "", page.split(marker)[1].split(end)[0])


def test_fleet_and_ponds_say_why_a_node_is_offline(site) -> None:
    h, c = site
    for node in ("heyuan-01", "xiatang-01", "beitang-01"):
        _status(h, node, "online")
    _status(h, "heyuan-01", "offline", "planned")  # systemctl stop
    _status(h, "xiatang-01", "offline")  # the Last Will: power or cable
    h.clock.advance(h.cfg.heartbeat_misses * h.cfg.heartbeat_interval_s + 1)
    _status(h, "heyuan-01", "offline")  # its retained Last Will after the clean stop
    assert h.svc.node_watch.check() == ["beitang-01"]  # heartbeats stopped
    as_user(c, "tech")
    fleet = c.get("/fleet").text
    assert "（计划停机）" in _cell(fleet, 'data-node="heyuan-01"')
    assert "（失联）" in _cell(fleet, 'data-node="xiatang-01"')
    assert "（心跳超时）" in _cell(fleet, 'data-node="beitang-01"')
    order = [fleet.index(f'data-node="{n}"') for n in ("xiatang-01", "heyuan-01")]
    assert order == sorted(order)  # a lost node before a planned stop
    assert "离线（计划停机）" in _cell(c.get("/fleet/heyuan-01").text, 'id="health"', "</dl>")
    en = c.get("/fleet/xiatang-01?lang=en").text
    assert "Offline (connection lost)" in _cell(en, 'id="health"', "</dl>")
    as_user(c, "guo")  # constables see the pond page, in their scope
    ponds = c.get("/ponds?lang=zh").text
    heyuan = _cell(ponds, 'id="pond-heyuan-shantang"')
    assert "heyuan-01：离线（计划停机）" in heyuan
    assert "无法看护：设备计划停机" in heyuan  # nobody is paged, and nobody watches it either
    assert 'data-watched="false"' in ponds.split('id="pond-heyuan-shantang"')[1].split("</tr>")[0]
    assert "xiatang-01：离线（失联）" in _cell(ponds, 'id="pond-xiatang"')
    _status(h, "heyuan-01", "online")
    heyuan = c.get("/ponds").text.split('id="pond-heyuan-shantang"')[1].split("</tr>")[0]
    assert "计划停机" not in heyuan and 'data-watched="true"' in heyuan


def test_fleet_flags_a_node_running_another_model_than_assigned(site) -> None:
    h, c = site
    good, old = "a" * 64, "b" * 64
    with h.svc.sessions() as s, s.begin():
        s.add(ServerModel(name="pond-person-v1", sha256=good, size=1, labels={},
                          uploaded_by="admin", uploaded_at=h.clock.now()))
        s.flush()
        s.add(ModelAssignment(target="*", model="pond-person-v1", assigned_by="admin",
                              assigned_at=h.clock.now()))
    for node, sha in (("heyuan-01", old), ("xiatang-01", good)):
        _say(h, Topics().health(node), encode(Health(
            ts=h.clock.now(), version="0.1.0", fps=5.0, model="person-offline",
            model_format="pt" if sha == old else "ncnn", model_sha256=sha)))
    as_user(c, "guo")
    assert c.get("/fleet").status_code == 403  # scoped like the rest of the page
    as_user(c, "tech")
    fleet = c.get("/fleet").text
    heyuan, xiatang = _cell(fleet, 'data-node="heyuan-01"'), _cell(fleet, 'data-node="xiatang-01"')
    assert "person-offline pt" in heyuan
    assert "⚠ 模型与指派不符：pond-person-v1" in heyuan
    assert "ncnn" in xiatang and "不符" not in xiatang
    assert "不符" not in _cell(fleet, 'data-node="beitang-01"')  # has not said
    assert fleet.index('data-node="heyuan-01"') < fleet.index('data-node="xiatang-01"')
    page = c.get("/fleet/heyuan-01").text
    model = _cell(page, 'id="model"', "</dd>")
    assert "person-offline" in model and "bbbbbbbbbbbb" in model and "⚠ 模型与指派不符" in model
    assert "pond-person-v1" in _cell(page, 'id="assigned-model"', "</dd>")
    assert "Model differs from the assigned one" in c.get("/fleet/heyuan-01?lang=en").text
    assert "不符" not in c.get("/fleet/xiatang-01").text
