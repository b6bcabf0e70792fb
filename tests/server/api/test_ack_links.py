"""An acknowledge link is bound to a person and a live alert: it needs a page to that person
for that alert and the pond in their scope, stops when the alert is resolved, asks before
resolving, and every use is on the timeline with the client address."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.access import auth
from server.access.links import LinkError, Signer
from server.app import create_app
from server.core.db import Grid, TimelineEntry
from server.link.ingest import Inbound
from tests.server.alerting.test_escalation import JPEG, Harness, P
from tests.server.conftest import PageReceiver


@pytest.fixture
def web(tmp_path: Path, receiver: PageReceiver) -> Iterator[tuple[Harness, TestClient]]:
    """An alert paged to the constable guo-yong, and a client without login."""
    h = Harness(tmp_path, receiver)
    client = TestClient(create_app(h.svc), follow_redirects=False)
    yield h, client
    client.close()
    h.close()


def _paged_link(h: Harness) -> str:
    ev = h.event(snapshot=True)
    h.ing.process(Inbound(f"{P}/heyuan-01/snapshot/{ev.id}", JPEG, 2, 1))
    h.tick()
    return str(re.search(r"http://\S+/a/(\S+)", h.receiver.pages[-1]["message"]).group(1))


def _link_uses(h: Harness) -> list[tuple[str | None, str]]:
    with h.svc.sessions() as s:
        return [(t.person_id, t.detail) for t in s.scalars(
            select(TimelineEntry).where(TimelineEntry.kind == "link").order_by(TimelineEntry.id))]


def test_a_link_needs_a_page_to_that_person_for_that_alert(web) -> None:
    h, c = web
    _paged_link(h)
    aid = h.alert().id
    # a well-signed link for someone this alert was never paged to (a leaked key, an old
    # link scheme, a bug) does nothing
    never_paged = h.svc.links.token(aid, "kang-donghai", h.clock.now())
    assert c.get(f"/a/{never_paged}").status_code == 403
    assert c.post(f"/a/{never_paged}", data={"action": "ack"}).status_code == 403
    assert c.post(f"/api/ack/{never_paged}", json={"action": "ack"}).status_code == 403
    assert c.get(f"/a/{never_paged}/snapshot.jpg").status_code == 403
    assert h.alert().state == "notified"
    assert _link_uses(h)[0] == ("kang-donghai", "page refused: not_paged from testclient")


def test_a_link_stops_when_the_pond_leaves_the_persons_scope(web) -> None:
    h, c = web
    link = _paged_link(h)
    assert c.get(f"/a/{link}").status_code == 200
    with h.svc.sessions() as s, s.begin():  # guo-yong hands the grid over
        grid = s.get(Grid, "gongyu")
        assert grid is not None
        grid.constable_id, grid.backup_id = "kang-donghai", None
    assert c.post(f"/a/{link}", data={"action": "ack"}).status_code == 403
    assert c.get(f"/a/{link}/snapshot.jpg").status_code == 403
    assert h.alert().state == "notified"


def test_resolving_asks_first_and_then_the_link_stops(web) -> None:
    h, c = web
    link = _paged_link(h)
    r = c.post(f"/a/{link}", data={"action": "resolve", "outcome": "false_alarm"})
    assert r.status_code == 200 and "确认将此告警处理为" in r.text and 'value="yes"' in r.text
    assert c.post(f"/api/ack/{link}", json={"action": "resolve",
                                            "outcome": "false_alarm"}).status_code == 409
    assert h.alert().state == "notified", "not resolved before the confirmation"
    r = c.post(f"/a/{link}", data={"action": "resolve", "outcome": "false_alarm",
                                   "confirm": "yes"})
    assert r.status_code == 303 and h.alert().state == "resolved"
    page = c.get(r.headers["location"])
    assert page.status_code == 410 and "已处理" in page.text and "snapshot.jpg" not in page.text
    assert c.get(f"/a/{link}/snapshot.jpg").status_code == 410, "no image after resolution"
    assert c.post(f"/a/{link}", data={"action": "ack"}).status_code == 410
    assert c.post(f"/api/ack/{link}", json={"action": "on_scene"}).status_code == 410


def test_every_use_is_on_the_timeline_with_the_client_address(web) -> None:
    h, c = web
    link = _paged_link(h)
    c.get(f"/a/{link}")
    c.get(f"/a/{link}/snapshot.jpg")
    c.post(f"/a/{link}", data={"action": "ack"})
    c.post(f"/api/ack/{link}", json={"action": "on_scene"})
    c.post(f"/a/{link}", data={"action": "resolve", "outcome": "real"})
    c.post(f"/a/{link}", data={"action": "resolve", "outcome": "real", "confirm": "yes"})
    c.get(f"/a/{link}?done=resolve")
    assert _link_uses(h) == [("guo-yong", f"{what} from testclient") for what in (
        "page", "snapshot", "ack", "on_scene (json)", "resolve real (asked to confirm)",
        "resolve real", "page refused: resolved")]


def test_a_link_token_is_no_session_cookie_and_a_cookie_no_link(web) -> None:
    """A paged link's token set as the session cookie logs nobody in (it is signed under
    another purpose's key, so it does not even verify as a session); opening the link sets no
    cookie; a logged-in constable's session cookie is no acknowledge link either."""
    h, c = web
    token = _paged_link(h)
    aid, now = h.alert().id, h.clock.now()
    opened = c.get(f"/a/{token}")
    assert opened.status_code == 200 and "set-cookie" not in opened.headers
    with pytest.raises(LinkError, match="bad signature"):
        Signer(h.cfg.resolved_secret(), "session").verify(token, now)
    with h.svc.sessions() as s:
        assert h.svc.web_sessions.read(s, token, now) is None
    c.cookies.set(auth.Sessions.COOKIE, token)
    assert c.get("/api/alerts").status_code == 401
    assert c.get(f"/api/alerts/{aid}").status_code == 401
    assert c.get(f"/alerts/{aid}").headers["location"].startswith("/login")
    assert c.post(f"/api/alerts/{aid}/actions", json={"action": "ack"}).status_code in (401, 403)
    assert h.alert().state == "notified"
    with h.svc.sessions() as s, s.begin():
        user = auth.set_user(s, "guo", "pass-word-123", "constable", "guo-yong")
        cookie = h.svc.web_sessions.issue(s, user, now)
    c.cookies.clear()
    assert c.get(f"/a/{cookie}").status_code == 403
    assert c.post(f"/api/ack/{cookie}", json={"action": "ack"}).status_code == 403
    assert h.alert().state == "notified"
