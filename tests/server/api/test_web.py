"""Web side over real HTTP handling (TestClient): ack links, login, roles, API, report, metrics."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.access import auth
from server.app import create_app
from server.cli import main
from server.core.db import Alert, Person, Snapshot
from server.link.ingest import Inbound
from tests.server.alerting.test_escalation import JPEG, Harness, P
from tests.server.conftest import PageReceiver


@pytest.fixture
def web(tmp_path: Path, receiver: PageReceiver):
    h = Harness(tmp_path, receiver)
    with h.svc.sessions() as s, s.begin():
        s.get(Person, "tech-wang").stations = ["quanjiang"]
        auth.set_user(s, "admin", "admin-pass-1", "admin")
        auth.set_user(s, "viewer", "viewer-pass-1", "viewer", "guo-yong")
        auth.set_user(s, "tech", "tech-pass-12", "technician", "tech-wang")
    client = TestClient(create_app(h.svc), follow_redirects=False)
    yield h, client
    client.close()
    h.close()


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    m = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def login_form(client: TestClient, user: str, pw: str):
    """Post the login form the way a browser does: with the token from the login page."""
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"username": user, "password": pw, "csrf_token": token})


def _login(client: TestClient, user: str, pw: str) -> str:
    """Log in; the CSRF token of the new session."""
    r = login_form(client, user, pw)
    assert r.status_code == 303 and r.headers["location"] == "/"
    token = client.get("/api/me").json()["csrf_token"]
    assert token
    return token


def _alert_with_link(h: Harness, snapshot: bool = True) -> tuple[int, str]:
    ev = h.event(snapshot=snapshot)
    if snapshot:
        h.ing.process(Inbound(f"{P}/heyuan-01/snapshot/{ev.id}", JPEG, 2, 1))
    h.tick()
    link = re.search(r"http://\S+/a/(\S+)", h.receiver.pages[-1]["message"]).group(1)
    return h.alert().id, link


def test_ack_page_buttons_and_json(web) -> None:
    h, c = web
    aid, token = _alert_with_link(h)
    r = c.get(f"/a/{token}")
    assert r.status_code == 200
    for text in ("禾源山塘", "禾源村", "已收到", "已到场", "已处理", "真实", "误报", "测试",
                 "uri.amap.com/marker?position=114.520000,26.330000", "郭勇"):
        assert text in r.text
    assert c.get(f"/a/{token}/snapshot.jpg").content == JPEG
    assert c.post(f"/a/{token}", data={"action": "resolve"}).status_code == 422
    assert c.post(f"/a/{token}", data={"action": "fly"}).status_code == 422
    r = c.post(f"/a/{token}", data={"action": "ack"})
    assert r.status_code == 303
    r = c.post(f"/api/ack/{token}", json={"action": "on_scene"})
    assert r.json()["alert"]["state"] == "on_scene" and r.json()["changed"]
    assert c.post(f"/api/ack/{token}", json={"action": "on_scene", "x": 1}).status_code == 422
    h.clock.advance(30)
    r = c.post(f"/a/{token}", data={"action": "resolve", "outcome": "real"})
    assert r.status_code == 200 and h.alert(aid).state == "on_scene"  # asks to confirm first
    r = c.post(f"/a/{token}", data={"action": "resolve", "outcome": "real", "confirm": "yes"})
    a = h.alert(aid)
    assert (a.state, a.outcome, a.acked_by) == ("resolved", "real", "guo-yong")
    assert "已处理" in c.get(f"/a/{token}?done=resolve").text


def test_forged_and_expired_links_are_refused(web) -> None:
    h, c = web
    _, token = _alert_with_link(h, snapshot=False)
    payload, mac = token.split(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + mac
    assert c.get(f"/a/{forged}").status_code == 403
    assert c.get("/a/not-a-token").status_code == 403
    assert c.post(f"/a/{forged}", data={"action": "ack"}).status_code == 403
    assert c.get(f"/a/{token}/snapshot.jpg").status_code == 404  # none stored
    h.clock.advance(h.cfg.link_ttl_s + 1)
    r = c.get(f"/a/{token}")
    assert r.status_code == 403 and "链接已过期" in r.text
    assert h.alert().state == "notified"


def test_login_roles_and_snapshot_privacy(web) -> None:
    h, c = web
    aid, _ = _alert_with_link(h)
    assert c.get("/").status_code == 303
    assert c.get(f"/alerts/{aid}/snapshot.jpg").status_code == 401
    r = login_form(c, "admin", "wrong-password")
    assert r.headers["location"] == "/login?error=1"
    c.cookies.set(auth.Sessions.COOKIE, "forged.cookie")
    assert c.get("/").status_code == 303
    c.cookies.clear()
    _login(c, "viewer", "viewer-pass-1")
    assert c.get("/").status_code == 200
    assert c.get(f"/alerts/{aid}/snapshot.jpg").status_code == 403
    assert "snapshot.jpg" not in c.get(f"/alerts/{aid}").text
    token = _login(c, "admin", "admin-pass-1")
    assert c.get(f"/alerts/{aid}/snapshot.jpg").content == JPEG
    page = c.get(f"/alerts/{aid}").text
    assert "guo-yong" in page or "郭勇" in page
    r = c.post(f"/alerts/{aid}", data={"action": "ack", "csrf_token": token})
    assert r.status_code == 303 and h.alert(aid).acked_by == "admin"
    assert c.post(f"/alerts/{aid}", data={"action": "resolve", "csrf_token": token}
                  ).status_code == 422
    h.clock.advance(h.cfg.session_ttl_s + 1)
    assert c.get("/").status_code == 303  # session expired


def test_snapshots_deleted_after_retention(web) -> None:
    h, _ = web
    _alert_with_link(h)
    assert h.svc.purge_snapshots() == 0
    h.clock.advance(h.cfg.snapshot_retention_days * 86400 + 1)
    assert h.svc.purge_snapshots() == 1
    with h.svc.sessions() as s:
        assert s.scalars(select(Snapshot)).first() is None


def test_json_api_with_basic_auth(web) -> None:
    h, c = web
    aid, _ = _alert_with_link(h, snapshot=False)
    assert c.get("/api/alerts").status_code == 401
    assert c.get("/api/alerts", auth=("admin", "nope-nope")).status_code == 401
    got = c.get("/api/alerts?state=active", auth=("admin", "admin-pass-1")).json()
    assert [a["id"] for a in got] == [aid] and got[0]["pond"] == "禾源山塘"
    detail = c.get(f"/api/alerts/{aid}", auth=("admin", "admin-pass-1")).json()
    assert [e["type"] for e in detail["events"]] == ["child_near_water"]
    assert [t["kind"] for t in detail["timeline"]][:2] == ["state", "note"]
    assert any(t["kind"] == "delivery" and t["result"] == "ok" for t in detail["timeline"])
    r = c.post(f"/api/alerts/{aid}/actions", json={"action": "resolve", "outcome": "test"},
               auth=("admin", "admin-pass-1"))
    assert r.json()["alert"]["state"] == "resolved"
    assert c.get("/api/alerts/999", auth=("admin", "admin-pass-1")).status_code == 404
    assert c.post("/api/alerts/999/actions", json={"action": "ack"},
                  auth=("admin", "admin-pass-1")).status_code == 404


def test_silences_need_technician_and_valid_target(web) -> None:
    h, c = web
    body = {"pond_id": "heyuan-shantang", "minutes": 60, "reason": "维护"}
    assert c.post("/api/silences", json=body, auth=("viewer", "viewer-pass-1")).status_code == 403
    assert c.post("/api/silences", json=body, auth=("tech", "tech-pass-12")).status_code == 201
    assert c.post("/api/silences", json={"minutes": 5}, auth=("tech", "tech-pass-12")
                  ).status_code == 422
    assert c.post("/api/silences", json={"pond_id": "nowhere", "minutes": 5},
                  auth=("tech", "tech-pass-12")).status_code == 422
    assert c.post("/api/silences", json={"pond_id": "xiatang", "minutes": 0},
                  auth=("tech", "tech-pass-12")).status_code == 422
    token = _login(c, "tech", "tech-pass-12")
    assert c.post("/silences", data={"node_id": "xiatang-01", "minutes": "30",
                                     "csrf_token": token}).status_code == 303
    assert "xiatang-01" in c.get("/silences").text
    h.event()
    h.tick()
    assert h.receiver.pages == [] and h.alert().silenced


def test_ponds_show_equipment_present_missing_unknown(web) -> None:
    h, c = web
    h.event("equipment_missing", item="lifebuoy")
    h.ing.process(Inbound(f"{P}/heyuan-01/health", (
        b'{"ts": "2026-07-01T08:00:00Z", "version": "1", "equipment": '
        b'{"sign": "present", "rope": "dark"}}'), 4, 0))
    ponds = {p["id"]: p for p in c.get("/api/ponds", auth=("admin", "admin-pass-1")).json()}
    eq = {e["item"]: e for e in ponds["heyuan-shantang"]["equipment"]}
    assert eq["lifebuoy"]["state"] == "missing"
    assert eq["lifebuoy"]["since_iso"] == "2026-07-01T08:00:00+00:00"
    assert (eq["sign"]["state"], eq["rope"]["state"]) == ("present", "unknown")
    assert ponds["xiatang"]["equipment"] == []
    _login(c, "admin", "admin-pass-1")
    page = c.get("/ponds").text
    assert 'data-item="lifebuoy" data-state="missing"' in page and "救生圈：缺失" in page


def _timed_alert(h: Harness, pond: str, node: str, ack_s: float | None,
                 scene_s: float | None, outcome: str | None = None) -> None:
    from server.alerting import alerts
    h.event("person_in_water", node=node, pond=pond)
    with h.svc.sessions() as s, s.begin():
        a = s.scalars(select(Alert).order_by(Alert.id.desc())).first()
        t0 = a.opened_at
        if ack_s is not None:
            alerts.act(s, a, "ack", "x", t0 + timedelta(seconds=ack_s))
        if scene_s is not None:
            alerts.act(s, a, "on_scene", "x", t0 + timedelta(seconds=scene_s))
        alerts.act(s, a, "resolve", "x", t0 + timedelta(seconds=400), outcome or "real")


def test_report_135_page_chart_and_csv(web) -> None:
    h, c = web
    _timed_alert(h, "heyuan-shantang", "heyuan-01", 30, 150)   # 1 ✓ 3 ✓ 5 ✓
    _timed_alert(h, "heyuan-shantang", "heyuan-01", 90, 250)   # 1 ✗ 3 ✗ 5 ✓
    _timed_alert(h, "xiatang", "xiatang-01", 45, None)         # 1 ✓ 3 ✗ 5 ✗
    _timed_alert(h, "xiatang", "xiatang-01", 5, 10, "test")    # excluded: a drill
    h.clock.advance(60)
    assert c.get("/report").status_code == 303
    _login(c, "admin", "admin-pass-1")
    page = c.get("/report").text
    assert '<svg xmlns="http://www.w3.org/2000/svg" id="chart"' in page
    assert 'data-group="全县" data-pct="66.7"' in page
    assert 'data-group="共裕网格" data-pct="50.0"' in page
    rows = list(csv.DictReader(io.StringIO(c.get("/report.csv").text.lstrip("\ufeff"))))
    assert [r["ack_s"] for r in rows] == ["30", "90", "45"]
    assert [r["on_scene_within_3min"] for r in rows] == ["1", "0", "0"]
    summary = list(csv.DictReader(io.StringIO(
        c.get("/report-summary.csv").text.lstrip("\ufeff"))))
    county = summary[-1]
    assert (county["group"], county["alerts"], county["pct_ack_1min"],
            county["pct_on_scene_5min"]) == ("全县", "3", "66.7", "66.7")
    assert c.get("/report?start=2026-07-02&end=2026-07-03").text.count("<tr data-group") == 1
    assert c.get("/report?start=yesterday").status_code == 422
    assert c.get("/report?start=2026-07-03&end=2026-07-01").status_code == 422


def test_metrics_and_healthz(web) -> None:
    h, c = web
    _alert_with_link(h, snapshot=False)
    text = c.get("/metrics").text
    assert "pondwatch_alerts_open 1.0" in text
    assert 'pondwatch_pages_total{channel="json",result="ok"} 1.0' in text
    assert "pondwatch_page_latency_seconds_bucket" in text
    assert c.get("/healthz").json()["ok"] is True


def test_cli_adduser(tmp_path: Path, monkeypatch, capsys) -> None:
    cfg = tmp_path / "server.yaml"
    cfg.write_text(f"environment: dev\nsecret_key: test-secret-key-0123456789\n"
                   f"database: sqlite:///{tmp_path / 'u.db'}\n", encoding="utf-8")
    monkeypatch.setenv("PONDWATCH_PASSWORD", "s3cret-pass-12")
    assert main(["adduser", str(cfg), "wang", "--role", "technician"]) == 2
    assert "needs --person" in capsys.readouterr().err
    assert main(["adduser", str(cfg), "root"]) == 0
    monkeypatch.setenv("PONDWATCH_PASSWORD", "short")
    assert main(["adduser", str(cfg), "li"]) == 2
    monkeypatch.setenv("PONDWATCH_PASSWORD", "s3cret-pass")
    assert main(["adduser", str(cfg), "li", "--role", "king"]) == 2
    assert "role must be one of" in capsys.readouterr().err
    assert main(["run", str(cfg), "--check-config"]) == 0


def test_password_hashes_are_salted_scrypt() -> None:
    a, b = auth.hash_password("same-password"), auth.hash_password("same-password")
    assert a != b and a.startswith("scrypt$")
    assert auth.check_password("same-password", a)
    assert not auth.check_password("other-password", a)
    assert not auth.check_password("x", "md5$abc")
    assert not auth.check_password("x", "garbage")


def test_links_are_per_recipient() -> None:
    from server.access.links import AckLinks, LinkError

    now = datetime(2026, 7, 1, tzinfo=UTC)
    links = AckLinks(b"k" * 32, "http://x", 60)
    t = links.token(5, "guo-yong", now)
    c = links.check(t, now)
    assert (c.alert_id, c.person_id) == (5, "guo-yong")
    other = AckLinks(b"j" * 32, "http://x", 60)
    with pytest.raises(LinkError):
        other.check(t, now)
    with pytest.raises(LinkError, match="expired"):
        links.check(t, now + timedelta(seconds=61))


def test_ponds_say_when_a_pond_is_not_watched(web) -> None:
    h, c = web
    h.event("camera_fault", reason="lens_covered")
    ponds = {p["id"]: p for p in c.get("/api/ponds", auth=("admin", "admin-pass-1")).json()}
    assert ponds["heyuan-shantang"]["watched"] is False
    assert ponds["heyuan-shantang"]["faults"] == ["摄像头故障"]
    assert ponds["xiatang"]["watched"] is True
    h.event("camera_ok")
    ponds = {p["id"]: p for p in c.get("/api/ponds", auth=("admin", "admin-pass-1")).json()}
    assert ponds["heyuan-shantang"]["watched"] is True
    _login(c, "admin", "admin-pass-1")
    assert 'data-watched="true"' in c.get("/ponds").text


def test_too_many_wrong_passwords_lock_the_name_for_a_while(web) -> None:
    h, c = web
    for _ in range(5):
        assert login_form(c, "admin", "guess-guess").headers["location"] == "/login?error=1"
    r = login_form(c, "admin", "admin-pass-1")
    assert r.headers["location"] == "/login?error=1"  # right password, still locked
    assert c.get("/api/alerts", auth=("admin", "admin-pass-1")).status_code == 401
    assert c.get("/api/alerts", auth=("tech", "tech-pass-12")).status_code == 200
    h.clock.advance(301)
    _login(c, "admin", "admin-pass-1")


def test_ack_page_in_english_on_request(web) -> None:
    h, c = web
    _, token = _alert_with_link(h, snapshot=False)
    r = c.get(f"/a/{token}?lang=en")
    assert "Received" in r.text and "False alarm" in r.text and "已收到" not in r.text
    r = c.post(f"/a/{token}?lang=en", data={"action": "ack"})
    assert r.headers["location"].endswith("done=ack&lang=en")
    assert "Recorded：Received" in c.get(r.headers["location"]).text
