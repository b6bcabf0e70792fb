"""End to end on the server side: MQTT event → alert → json:// page → ack link → dashboard."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import func, select

from server.core.db import Alert, EventRow
from server.runner import Server
from tests.server.conftest import FakeNode, PageReceiver

LINK = re.compile(r"https?://\S+/a/[A-Za-z0-9_.-]+")


def test_child_event_pages_constable_and_ack_link_acknowledges(config, receiver: PageReceiver,
                                                              node: FakeNode, monkeypatch) -> None:
    monkeypatch.setenv("PONDWATCH_ADMIN_PASSWORD", "admin-pass-123")
    with Server(config) as srv:
        assert srv.services.ingest is not None
        assert srv.services.ingest.connected.wait(10)
        ev = node.event("child_near_water", track_id=3, zone="bank", stature_m=1.2)
        node.event("child_near_water", track_id=4, zone="bank", stature_m=1.1)  # folds
        pages = receiver.wait(1, timeout=15)  # how soon: bench/paging.py (goal: 2 s)
        page = pages[0]
        assert receiver.paths[0] == "/guo-yong"
        assert "禾源山塘" in page["title"] and "禾源村" in page["message"]
        link = LINK.search(page["message"]).group(0)
        assert link.startswith(srv.url + "/a/")
        node.wait_acked({ev.id})

        r = httpx.get(link)
        assert r.status_code == 200
        assert "禾源山塘" in r.text and "已收到" in r.text and "uri.amap.com" in r.text
        r = httpx.post(link, data={"action": "ack"}, follow_redirects=True)
        assert r.status_code == 200 and "已记录" in r.text

        with srv.services.sessions() as s:
            alert = s.scalars(select(Alert)).one()
            assert alert.state == "acknowledged" and alert.acked_by == "guo-yong"
            assert alert.event_count == 2
            assert s.scalar(select(func.count()).select_from(EventRow)) == 2

        with httpx.Client(base_url=srv.url) as web:
            assert web.get("/").status_code in (200, 303)
            token = re.search(r'name="csrf_token" value="(\w+)"', web.get("/login").text)
            assert token, "login form without CSRF token"
            r = web.post("/login", data={"username": "admin", "password": "admin-pass-123",
                                         "csrf_token": token.group(1)}, follow_redirects=True)
            assert r.status_code == 200
            row = re.search(r'data-alert-id="(\d+)" data-state="(\w+)"', r.text)
            assert row and row.group(2) == "acknowledged"
        assert len(receiver.pages) == 1  # the folded second child paged nobody
