"""Each security finding of issue 12, with a test that failed on the code before the fix."""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from server.access import auth
from server.app import create_app
from server.cli import main
from server.core.config import ConfigError, parse_config
from server.core.db import Alert, Grid, Pond, WebSession
from server.link.ingest import Inbound
from tests.server.alerting.test_escalation import JPEG, Harness, P
from tests.server.conftest import PageReceiver

STRONG = "Kq3-vT9x_LmZ2wR7pY4nB8sD"
PW = "admin-pass-1"


def _token(page: str) -> str:
    """The CSRF token in a page's forms."""
    m = re.search(r'name="csrf_token" value="(\w+)"', page)
    assert m, "page has no CSRF token"
    return m.group(1)


def _login(c: TestClient, user: str = "admin", pw: str = PW) -> str:
    """Log in through the form; the session's CSRF token."""
    r = c.post("/login", data={"username": user, "password": pw,
                               "csrf_token": _token(c.get("/login").text)})
    assert r.headers["location"] == "/", r.headers["location"]
    return c.get("/api/me").json()["csrf_token"]


class Web:
    """A harness, users, and a fresh TestClient factory."""

    def __init__(self, tmp_path: Path, receiver: PageReceiver, **extra: object) -> None:
        self.h = Harness(tmp_path, receiver, **extra)
        with self.h.svc.sessions() as s, s.begin():
            auth.set_user(s, "admin", PW, "admin")
            auth.set_user(s, "guo", "guo-pass-123", "constable", "guo-yong")
        self.app = create_app(self.h.svc)
        self.clients: list[TestClient] = []

    def client(self, **kw: object) -> TestClient:
        c = TestClient(self.app, follow_redirects=False, **kw)  # type: ignore[arg-type]
        self.clients.append(c)
        return c

    def alert(self, snapshot: bool = True) -> tuple[int, str]:
        """An alert paged to guo-yong; its id and guo-yong's link token."""
        ev = self.h.event(snapshot=snapshot)
        if snapshot:
            self.h.ing.process(Inbound(f"{P}/heyuan-01/snapshot/{ev.id}", JPEG, 2, 1))
        self.h.tick()
        token = re.search(r"http://\S+/a/(\S+)", self.h.receiver.pages[-1]["message"]).group(1)
        return self.h.alert().id, token

    def close(self) -> None:
        for c in self.clients:
            c.close()
        self.h.close()


@pytest.fixture
def web(tmp_path: Path, receiver: PageReceiver) -> Iterator[Web]:
    w = Web(tmp_path, receiver)
    yield w
    w.close()


# --- report chart (stored XSS) -------------------------------------------------------------

def test_report_chart_escapes_grid_names(web: Web) -> None:
    evil = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'
    with web.h.svc.sessions() as s, s.begin():
        s.execute(update(Grid).where(Grid.id == "gongyu").values(name=evil))
    web.h.event("person_in_water")
    c = web.client()
    _login(c)
    page = c.get("/report").text
    assert "<script>alert" not in page and "onerror=alert(1)>" not in page
    chart = page[page.index('<svg xmlns="http://www.w3.org/2000/svg" id="chart"'):]
    assert "&lt;script&gt;" in chart and 'data-group="&lt;script&gt;' in chart


# --- server-side sessions -------------------------------------------------------------------

def test_logout_revokes_the_cookie_on_the_server(web: Web) -> None:
    c = web.client()
    token = _login(c)
    stolen = c.cookies.get(auth.Sessions.COOKIE)
    assert c.post("/logout", data={"csrf_token": token}).status_code == 303
    thief = web.client(cookies={auth.Sessions.COOKIE: stolen})
    assert thief.get("/").status_code == 303
    assert thief.get("/api/alerts").status_code == 401
    with web.h.svc.sessions() as s:
        assert s.scalars(select(WebSession)).all() == []


def test_password_change_revokes_every_session_of_the_user(web: Web, tmp_path: Path,
                                                          monkeypatch) -> None:
    a, b, other = web.client(), web.client(), web.client()
    _login(a)
    _login(b)
    _login(other, "guo", "guo-pass-123")
    with web.h.svc.sessions() as s, s.begin():
        auth.set_user(s, "admin", "new-admin-pass", "admin")
    assert a.get("/").status_code == 303 and b.get("/api/me").status_code == 401
    assert other.get("/api/me").status_code == 200  # another user's session stays
    c = web.client()
    _login(c, "admin", "new-admin-pass")
    # the CLI does the same (adduser on an existing user)
    cfg = tmp_path / "server.yaml"
    cfg.write_text(f"environment: dev\nsecret_key: {STRONG}\n"
                   f"database: {web.h.cfg.database}\n", encoding="utf-8")
    monkeypatch.setenv("PONDWATCH_PASSWORD", "third-admin-pass")
    assert main(["adduser", str(cfg), "admin"]) == 0
    assert c.get("/api/me").status_code == 401


def test_env_admin_at_start_keeps_sessions_unless_the_password_changed(web: Web,
                                                                     monkeypatch) -> None:
    c = web.client()
    _login(c)
    monkeypatch.setenv("PONDWATCH_ADMIN_PASSWORD", PW)
    with web.h.svc.sessions() as s, s.begin():
        auth.ensure_env_admin(s)   # a restart with the same password
    assert c.get("/api/me").status_code == 200
    monkeypatch.setenv("PONDWATCH_ADMIN_PASSWORD", "rotated-admin-pass")
    with web.h.svc.sessions() as s, s.begin():
        auth.ensure_env_admin(s)
    assert c.get("/api/me").status_code == 401


def test_sessions_table_stays_bounded(web: Web) -> None:
    for _ in range(auth.Sessions.PER_USER + 5):
        _login(web.client())
    with web.h.svc.sessions() as s:
        assert len(s.scalars(select(WebSession)).all()) == auth.Sessions.PER_USER
    web.h.clock.advance(web.h.cfg.session_ttl_s + 1)
    _login(web.client(), "guo", "guo-pass-123")   # expired rows go at the next login
    with web.h.svc.sessions() as s:
        assert [r.username for r in s.scalars(select(WebSession))] == ["guo"]


# --- Secure cookies -------------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "secure"), [
    ({}, False),  # dev on http
    ({"http": {"bind": "127.0.0.1:8080", "public_url": "https://pw.example.org"}}, True),
    ({"environment": "production", "secret_key": STRONG,
      "http": {"bind": "0.0.0.0:8080", "public_url": "http://pw.example.org"}}, True),
    ({"environment": "production", "secret_key": STRONG,
      "http": {"bind": "127.0.0.1:8080", "public_url": "http://127.0.0.1:8080"}}, False),
])
def test_cookies_are_secure_outside_dev_and_behind_https(tmp_path: Path, receiver: PageReceiver,
                                                         extra: dict, secure: bool,
                                                         caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="server.api.security"):
        w = Web(tmp_path, receiver, **extra)
    plain = extra.get("http", {}).get("public_url", "http://").startswith("http://")
    assert ("logins will not stick" in caplog.text) is (secure and plain)
    try:
        c = w.client(base_url=extra.get("http", {}).get("public_url", "http://testserver"))
        page = c.get("/login")
        nonce_cookie = page.headers["set-cookie"]
        r = c.post("/login", data={"username": "admin", "password": PW,
                                   "csrf_token": _token(page.text)},
                   cookies={"pw_login_nonce": page.cookies["pw_login_nonce"]})
        session_cookie = next(v for v in r.headers.get_list("set-cookie")
                              if v.startswith(auth.Sessions.COOKIE + "="))
        for cookie in (nonce_cookie, session_cookie):
            assert ("; secure" in cookie.lower()) is secure, cookie
            assert "httponly" in cookie.lower()
    finally:
        w.close()


# --- CSRF and Origin ------------------------------------------------------------------------

def test_login_needs_the_forms_csrf_token(web: Web) -> None:
    c = web.client()
    r = c.post("/login", data={"username": "admin", "password": PW})
    assert r.headers["location"] == "/login?error=csrf"
    assert auth.Sessions.COOKIE not in c.cookies
    page = c.get("/login").text
    other = web.client()
    other.get("/login")   # its own nonce: a token from another browser does not fit
    r = other.post("/login", data={"username": "admin", "password": PW,
                                   "csrf_token": _token(page)})
    assert r.headers["location"] == "/login?error=csrf"
    assert c.post("/login", data={"username": "admin", "password": PW,
                                  "csrf_token": _token(page)}).headers["location"] == "/"


def test_cookie_posts_without_the_sessions_token_are_refused(web: Web) -> None:
    aid, _ = web.alert(snapshot=False)
    c = web.client()
    token = _login(c)
    other = web.client()
    other_token = _login(other)
    assert token != other_token
    assert c.post(f"/alerts/{aid}", data={"action": "ack"}).status_code == 403
    assert c.post(f"/alerts/{aid}", data={"action": "ack", "csrf_token": other_token}
                  ).status_code == 403
    assert c.post(f"/api/alerts/{aid}/actions", json={"action": "ack"}).status_code == 403
    assert c.post("/logout").status_code == 403
    assert web.h.alert(aid).state == "notified"
    assert c.post(f"/api/alerts/{aid}/actions", json={"action": "ack"},
                  headers={"X-CSRF-Token": token}).status_code == 200
    # Basic auth is not ambient in a browser form post: no token needed
    assert web.client().post(f"/api/alerts/{aid}/actions", json={"action": "on_scene"},
                             auth=("admin", PW)).status_code == 200


def _api_routes(routes: list) -> Iterator[APIRoute]:
    """Every APIRoute, also inside included routers."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from _api_routes(route.original_router.routes)


def test_every_cookie_authenticated_post_route_checks_the_token(web: Web) -> None:
    aid, _ = web.alert(snapshot=False)
    c = web.client()
    _login(c)
    values = {"alert_id": str(aid), "node_id": "heyuan-01", "pond_id": "heyuan-shantang",
              "username": "guo", "name": "x", "id": "1", "silence_id": "1"}
    checked = []
    for route in _api_routes(web.app.routes):
        if not route.methods & {"POST", "PUT", "PATCH", "DELETE"}:
            continue
        if route.path in ("/login",) or route.path.startswith(("/a/", "/api/ack/")):
            continue  # the login form has its own token; links carry a signed capability
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values.get(m.group(1), "1"), route.path)
        for method in route.methods & {"POST", "PUT", "PATCH", "DELETE"}:
            r = c.request(method, path, data={"x": "1"})
            assert r.status_code == 403 and "CSRF" in r.text, (method, route.path, r.status_code)
            checked.append(route.path)
    assert {"/alerts/{alert_id}", "/silences", "/logout", "/api/silences"} <= set(checked)


def test_cross_site_origin_is_refused(web: Web) -> None:
    aid, link = web.alert(snapshot=False)
    c = web.client()
    token = _login(c)
    evil = {"Origin": "https://evil.example", "X-CSRF-Token": token}
    assert c.post(f"/api/alerts/{aid}/actions", json={"action": "ack"}, headers=evil
                  ).status_code == 403
    assert c.post(f"/a/{link}", data={"action": "ack"}, headers={"Origin": "null"}
                  ).status_code == 403
    assert c.post(f"/a/{link}", data={"action": "ack"},
                  headers={"Referer": "https://evil.example/page"}).status_code == 403
    assert web.h.alert(aid).state == "notified"
    same = {"Origin": "http://testserver", "X-CSRF-Token": token}
    assert c.post(f"/api/alerts/{aid}/actions", json={"action": "ack"}, headers=same
                  ).status_code == 200
    public = {"Origin": web.h.cfg.http.public_url, "X-CSRF-Token": token}
    assert c.post(f"/api/alerts/{aid}/actions", json={"action": "on_scene"}, headers=public
                  ).status_code == 200


# --- login throttling -----------------------------------------------------------------------

def test_guessing_from_one_ip_does_not_lock_the_admin_out_elsewhere(web: Web) -> None:
    attacker = web.client(client=("203.0.113.9", 40000))
    _guess(attacker, 30)
    r = attacker.post("/login", data={"username": "admin", "password": PW,
                                      "csrf_token": _token(attacker.get("/login").text)})
    assert r.headers["location"] == "/login?error=1"   # the guesser stays out
    assert attacker.get("/api/me", auth=("guo", "guo-pass-123")).status_code == 401  # its IP
    _login(web.client(client=("198.51.100.7", 40001)))  # the admin elsewhere is not locked
    web.h.clock.advance(301)
    _login(attacker)


def _guess(c: TestClient, n: int, headers: dict[str, str] | None = None) -> None:
    """n wrong admin passwords through the login form."""
    for _ in range(n):
        c.post("/login", headers=headers, data={
            "username": "admin", "password": "guess-guess",
            "csrf_token": _token(c.get("/login").text)})


def test_behind_a_trusted_proxy_the_forwarded_client_is_throttled(tmp_path: Path,
                                                                  receiver: PageReceiver) -> None:
    w = Web(tmp_path, receiver, http={"bind": "127.0.0.1:8080",
                                      "public_url": "http://testserver",
                                      "trusted_proxies": ["10.0.0.0/24"]})
    try:
        proxy = w.client(client=("10.0.0.1", 40000))
        _guess(proxy, 30, {"X-Forwarded-For": "203.0.113.9"})
        assert proxy.get("/api/me", auth=("guo", "guo-pass-123"),
                         headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 401
        assert proxy.get("/api/me", auth=("guo", "guo-pass-123"),   # another client, same proxy
                         headers={"X-Forwarded-For": "198.51.100.7, 10.0.0.2"}
                         ).status_code == 200
        stranger = w.client(client=("192.0.2.1", 40001))   # not a proxy: its header is ignored
        _guess(stranger, 25, {"X-Forwarded-For": "198.51.100.99"})
        assert stranger.get("/api/me", auth=("guo", "guo-pass-123"),
                            headers={"X-Forwarded-For": "198.51.100.100"}).status_code == 401
    finally:
        w.close()
    with pytest.raises(ConfigError, match="trusted_proxies"):
        parse_config({"environment": "dev", "http": {"trusted_proxies": ["not-an-ip"]}})


def test_throttle_table_is_bounded_and_expires() -> None:
    t = auth.LoginThrottle(max_failures=5, window_s=300, ip_failures=20, max_keys=1000)
    now = datetime(2026, 7, 1, tzinfo=UTC)
    for i in range(5000):
        t.failed(f"name-{i}", f"10.0.{i // 250}.{i % 250}", now)
    assert len(t) <= 1000
    for _ in range(50):
        t.failed("admin", "10.9.9.9", now)
    assert t.blocked("admin", "10.9.9.9", now)
    assert not t.blocked("admin", "10.9.9.8", now)
    assert max(len(v) for v in t._fails.values()) <= 20   # per key bounded too
    later = now + timedelta(seconds=301)
    assert not t.blocked("admin", "10.9.9.9", later)
    t.failed("x", "10.0.0.1", later)  # an insert past the cap drops expired keys first
    assert len(t) <= 1000
    ip = auth.LoginThrottle(max_failures=5, window_s=300, ip_failures=20)
    for i in range(20):
        ip.failed(f"user-{i}", "10.1.1.1", now)
    assert ip.blocked("someone-new", "10.1.1.1", now)
    assert not ip.blocked("someone-new", "10.1.1.2", now)


# --- snapshots ------------------------------------------------------------------------------

@pytest.fixture
def web_images(tmp_path: Path, receiver: PageReceiver) -> Iterator[Web]:
    """A site whose json:// pages may carry the snapshot (paging.attach_images)."""
    w = Web(tmp_path, receiver, paging={"attach_images": ["json"]})
    yield w
    w.close()


def test_snapshot_temp_files_are_deleted_after_sending(web_images: Web) -> None:
    web = web_images
    seen: list[tuple[Path, bool, bytes]] = []
    send = web.h.svc.pager.send

    def recording(url: str, title: str, body: str, attachment: Path | None) -> bool:
        assert attachment is not None
        seen.append((attachment, attachment.exists(), attachment.read_bytes()))
        return send(url, title, body, attachment)

    web.h.svc.pager.send = recording
    web.alert()
    web.h.tick(60)  # second step: three more people, each with the snapshot
    assert len(seen) == 4 and all(existed and data == JPEG for _, existed, data in seen)
    assert not any(path.exists() for path, _, _ in seen)
    assert list(Path(web.h.svc.pager._tmp.name).iterdir()) == []


def test_link_snapshot_only_while_open(web: Web) -> None:
    aid, link = web.alert()
    c = web.client()
    assert c.get(f"/a/{link}/snapshot.jpg").content == JPEG
    r = c.post(f"/api/ack/{link}", json={"action": "resolve", "outcome": "real",
                                         "confirm": True})
    assert r.json()["alert"]["state"] == "resolved"
    assert c.get(f"/a/{link}/snapshot.jpg").status_code == 410  # the link stopped
    assert f"/a/{link}/snapshot.jpg" not in c.get(f"/a/{link}").text
    assert c.get(f"/a/{link}").status_code == 410   # the page itself says what happened


# --- CSV injection --------------------------------------------------------------------------

def test_report_csv_neutralises_formula_cells(web: Web) -> None:
    from server.alerting import alerts
    with web.h.svc.sessions() as s, s.begin():
        s.execute(update(Pond).where(Pond.id == "heyuan-shantang")
                  .values(name='=HYPERLINK("http://evil","点击")'))
        s.execute(update(Grid).where(Grid.id == "gongyu").values(name="@SUM(A1)"))
        s.execute(update(Grid).where(Grid.id == "dongshan").values(name="\tcmd"))
        s.execute(update(Pond).where(Pond.id == "xiatang").values(name="+1-1"))
    web.h.event("person_in_water")
    web.h.event("person_in_water", node="xiatang-01", pond="xiatang")
    with web.h.svc.sessions() as s, s.begin():
        for a in s.scalars(select(Alert)):
            alerts.act(s, a, "ack", "x", a.opened_at + timedelta(seconds=20))
    web.h.clock.advance(60)
    c = web.client()
    _login(c)
    rows = list(csv.DictReader(io.StringIO(c.get("/report.csv").text.lstrip("\ufeff"))))
    assert {r["pond"] for r in rows} == {"'=HYPERLINK(\"http://evil\",\"点击\")", "'+1-1"}
    assert {r["grid"] for r in rows} == {"'@SUM(A1)", "'\tcmd"}
    assert rows[0]["ack_s"] == "20"   # numbers untouched
    summary = list(csv.DictReader(io.StringIO(
        c.get("/report-summary.csv").text.lstrip("\ufeff"))))
    assert {r["group"] for r in summary} == {"'@SUM(A1)", "'\tcmd", "全县"}


# --- log injection --------------------------------------------------------------------------

def test_topics_are_logged_quoted_and_cut(web: Web, caplog) -> None:
    topic = f"{P}/heyuan-01/bogus\n2026-07-01 INFO server.access.auth: admin logged in" + "x" * 5000
    with caplog.at_level(logging.WARNING, logger="server.link.ingest"):
        web.h.ing._process_retrying(Inbound(topic, b"{}", 9, 1))
    [rec] = [r for r in caplog.records if "rejected message" in r.getMessage()]
    line = rec.getMessage()
    assert "\n" not in line and "\\n2026-07-01 INFO" in line
    assert len(line) < 700


# --- secret strength ------------------------------------------------------------------------

@pytest.mark.parametrize("weak", [
    "aaaaaaaaaaaaaaaaaaaaaaaa", "changeme-changeme-changeme", "abcdefghijklmnopqrstuvwx",
    "abcdabcdabcdabcdabcdabcd", "password12345678", "1111111122222222", "short-key"])
def test_weak_secret_keys_are_refused_in_production(weak: str, monkeypatch) -> None:
    monkeypatch.delenv("PONDWATCH_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="secret_key: "):
        parse_config({"secret_key": weak})
    monkeypatch.setenv("PONDWATCH_SECRET_KEY", weak)
    with pytest.raises(ConfigError, match="secret_key: "):
        parse_config({})


def test_weak_secret_key_file_is_refused_and_strong_keys_pass(tmp_path: Path,
                                                             monkeypatch) -> None:
    monkeypatch.delenv("PONDWATCH_SECRET_KEY", raising=False)
    f = tmp_path / "key"
    f.write_text("0000000000000000000000000000\n", encoding="utf-8")
    f.chmod(0o600)
    with pytest.raises(ConfigError, match="secret_key: a short pattern repeated"):
        parse_config({"secret_key_file": str(f)})
    f.write_text(STRONG + "\n", encoding="utf-8")
    assert parse_config({"secret_key_file": str(f)}).resolved_secret() == STRONG.encode()
    assert parse_config({"secret_key": "a-real-secret-from-the-environment"})


# --- API docs and headers -------------------------------------------------------------------

def test_api_docs_need_login_in_dev_and_are_off_in_production(web: Web, tmp_path: Path,
                                                              receiver: PageReceiver) -> None:
    c = web.client()
    assert c.get("/api/docs").status_code == 303
    assert c.get("/api/openapi.json").status_code == 401
    assert c.get("/openapi.json").status_code == 404 and c.get("/docs").status_code == 404
    _login(c)
    assert c.get("/api/docs").status_code == 200
    assert "/api/alerts" in c.get("/api/openapi.json").json()["paths"]
    (tmp_path / "prod").mkdir()
    prod = Web(tmp_path / "prod", receiver, environment="production", secret_key=STRONG)
    try:
        p = prod.client()
        _login(p)
        assert p.get("/api/docs").status_code == 404
        assert p.get("/api/openapi.json").status_code == 404
    finally:
        prod.close()


def test_every_response_forbids_framing_and_referrers(web: Web) -> None:
    aid, link = web.alert()
    c = web.client()
    responses = [c.get("/login"), c.get("/"), c.get("/api/alerts"), c.get("/nowhere"),
                 c.get(f"/a/{link}"), c.get(f"/a/{link}/snapshot.jpg"), c.get("/healthz")]
    _login(c)
    responses += [c.get("/"), c.get(f"/alerts/{aid}"), c.get(f"/alerts/{aid}/snapshot.jpg"),
                  c.get("/api/alerts"), c.get("/report.csv"),
                  c.post(f"/alerts/{aid}", data={"action": "ack"})]  # a 403 too
    for r in responses:
        assert r.headers["referrer-policy"] == "no-referrer", r.url
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], r.url
        assert r.headers["x-content-type-options"] == "nosniff"
