"""The lower findings of the trust review: request bodies bounded before authentication, a
cap on live streams per user, the login throttle per IPv6 /64 and with a cap on names, a
secret key file nobody else may read."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.access import auth
from server.access.auth import MAX_USERNAME, LoginThrottle
from server.alerting import live
from server.api.body_limit import MAX_BODY_BYTES
from server.app import create_app
from server.core.config import ConfigError, parse_config
from tests.server.alerting.test_escalation import Harness
from tests.server.conftest import PageReceiver
from tests.support import ROOT

NOW = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def web(tmp_path: Path, receiver: PageReceiver) -> Iterator[tuple[Harness, TestClient]]:
    """The app with an admin and a technician."""
    h = Harness(tmp_path, receiver)
    with h.svc.sessions() as s, s.begin():
        auth.set_user(s, "admin", "admin-pass-12", "admin")
        auth.set_user(s, "tech", "tech-pass-12", "technician", "tech-wang")
    client = TestClient(create_app(h.svc), follow_redirects=False)
    yield h, client
    client.close()
    h.close()


def test_large_bodies_are_refused_before_authentication(web) -> None:
    _, c = web
    big = b"x" * (MAX_BODY_BYTES + 1)
    assert c.post("/login", content=big, headers={
        "content-type": "application/x-www-form-urlencoded"}).status_code == 413
    assert c.post("/api/alerts/1/actions", content=big,
                  headers={"content-type": "application/json"}).status_code == 413
    # without a Content-Length (chunked): cut as soon as the stream passes the limit
    chunks = (b"y" * 65536 for _ in range(MAX_BODY_BYTES // 65536 + 2))
    assert c.post("/api/ack/whatever", content=chunks,
                  headers={"content-type": "application/json"}).status_code == 413
    # the model upload takes a large body only from an admin
    upload = {"content-type": "multipart/form-data; boundary=b"}
    assert c.post("/api/models", content=big, headers=upload).status_code == 413
    assert c.post("/api/models", content=big, headers=upload,
                  auth=("tech", "tech-pass-12")).status_code == 413
    r = c.post("/api/models", content=big, headers=upload, auth=("admin", "admin-pass-12"))
    assert r.status_code != 413, "an admin's upload is read (and judged by the route)"
    # small bodies are untouched
    assert c.post("/api/alerts/1/actions", json={"action": "ack"}).status_code == 401


def test_a_user_holds_a_bounded_number_of_live_streams(web) -> None:
    h, c = web
    hub: live.Hub = c.app.state.live  # type: ignore[attr-defined]

    async def hold() -> list[live.Subscription | None]:
        return [hub.subscribe("admin") for _ in range(live.MAX_PER_OWNER + 1)]

    held = asyncio.run(hold())
    assert None not in held[:-1] and held[-1] is None, "the hub caps one owner"
    assert hub.subscribe is not None and hub.holds("admin") == live.MAX_PER_OWNER
    assert c.get("/live/alerts", auth=("admin", "admin-pass-12")).status_code == 429
    for sub in held[:-1]:
        assert sub is not None
        sub.close()
    assert hub.holds("admin") == 0


def test_login_throttle_counts_an_ipv6_slash_64_as_one_source() -> None:
    t = LoginThrottle(max_failures=5, ip_failures=20)
    for i in range(20):  # a host rotating through the addresses of its own /64
        t.failed(f"guess{i}", f"2001:db8:1:2::{i + 1:x}", NOW)
    assert t.blocked("admin", "2001:db8:1:2:ffff::9", NOW), "the whole /64 is refused"
    assert not t.blocked("admin", "2001:db8:1:3::1", NOW), "the next /64 is someone else"
    assert LoginThrottle.source("::ffff:192.0.2.7") == "192.0.2.7"
    assert LoginThrottle.source("192.0.2.7") == "192.0.2.7"


def test_login_names_are_capped(web) -> None:
    h, _ = web
    with h.svc.sessions() as s:
        t = LoginThrottle()
        assert auth.login(s, t, "a" * (MAX_USERNAME + 1), "x", NOW, "192.0.2.1") is None
        assert all(len(k[1]) <= 64 + MAX_USERNAME + 1 for k in t._fails)
        long_name = "b" * 100_000
        for _ in range(3):
            t.failed(long_name, "192.0.2.2", NOW)
        assert all(len(k[1]) <= 64 + MAX_USERNAME + 1 for k in t._fails), "keys stay short"
    with h.svc.sessions() as s, pytest.raises(auth.UserError, match="user name"):
        auth.set_user(s, "c" * (MAX_USERNAME + 1), "a-long-password-1", "admin")


def test_admin_passwords_have_at_least_12_characters(web) -> None:
    h, _ = web
    with h.svc.sessions() as s, pytest.raises(auth.UserError, match="at least 12"):
        auth.set_user(s, "admin2", "eleven-char", "admin")
    with h.svc.sessions() as s, s.begin():
        auth.set_user(s, "guo", "eleven-char", "constable", "guo-yong")  # others: 8


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_secret_key_file_others_may_read_is_refused(tmp_path: Path, monkeypatch, mode: int
                                                      ) -> None:
    monkeypatch.delenv("PONDWATCH_SECRET_KEY", raising=False)
    f = tmp_path / "key"
    f.write_text("Zq8-vN3pX7wKd2LmR5tYb9HsF4gJc6Ae\n", encoding="utf-8")
    f.chmod(mode)
    with pytest.raises(ConfigError, match="secret_key_file: .* group or others"):
        parse_config({"secret_key_file": str(f)}).resolved_secret()
    f.chmod(0o600)
    assert parse_config({"secret_key_file": str(f)}).resolved_secret().startswith(b"Zq8")


def test_csp_allows_only_the_sites_own_scripts_and_templates_have_no_inline_code(web) -> None:
    _, c = web
    for path in ("/login", "/a/not-a-token", "/static/live.js"):
        csp = c.get(path).headers["content-security-policy"]
        assert "default-src 'self'" in csp and "unsafe-inline" not in csp, csp
        assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
    for page in sorted((ROOT / "server" / "templates").glob("*.html")):
        html = page.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), f"inline script: {page}"
        assert not re.search(r"\son[a-z]+\s*=", html), f"inline event handler: {page}"
        assert not re.search(r"<style|\sstyle\s*=|javascript:", html), f"inline style: {page}"


def test_csp_admits_the_map_tile_server(tmp_path: Path, receiver: PageReceiver) -> None:
    h = Harness(tmp_path, receiver, map_tile_url="https://tiles.county.example/{z}/{x}/{y}.png")
    with TestClient(create_app(h.svc)) as c:
        csp = c.get("/login").headers["content-security-policy"]
    h.close()
    assert "img-src 'self' https://tiles.county.example;" in csp
