"""False alarms measured: per node and week on the report, a node over budget flagged, and
its false alarms' snapshots one click away within scope, roles and retention."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.alerting import alerts
from server.core.db import Alert
from server.link.ingest import Inbound
from tests.server.alerting.test_escalation import JPEG, Harness, P
from tests.server.api.test_pages import as_user, make_site
from tests.server.conftest import PageReceiver


def incident(h: Harness, node: str, pond: str, outcome: str, snapshot: bool = False) -> int:
    """One critical alert at a pond, resolved with outcome; returns its id."""
    ev = h.event("person_in_water", node=node, pond=pond, snapshot=snapshot)
    if snapshot:
        h.ing.process(Inbound(f"{P}/{node}/snapshot/{ev.id}", JPEG, 2, 1))
    with h.svc.sessions() as s, s.begin():
        a = s.scalars(select(Alert).order_by(Alert.id.desc())).first()
        alerts.act(s, a, "resolve", "guo-yong", h.clock.now(), outcome)
        return a.id


@pytest.fixture
def site(tmp_path: Path, receiver: PageReceiver) -> Iterator[tuple[Harness, TestClient]]:
    """Week of 2026-06-29: heyuan-01 two false alarms of three, xiatang-01 one real alert;
    beitang-01 one false alarm in the same week."""
    h, c = make_site(tmp_path, receiver)
    ids = [incident(h, "heyuan-01", "heyuan-shantang", "false_alarm", snapshot=True)]
    h.clock.advance(3600)
    ids.append(incident(h, "heyuan-01", "heyuan-shantang", "false_alarm"))
    h.clock.advance(3600)
    incident(h, "heyuan-01", "heyuan-shantang", "real")
    incident(h, "xiatang-01", "xiatang", "real")
    incident(h, "beitang-01", "beitang", "false_alarm")
    h.ids = ids  # type: ignore[attr-defined]
    yield h, c
    c.close()
    h.close()


def test_report_shows_rate_per_node_day_and_flags_over_budget(site) -> None:
    """Period 2026-06-29..07-05 (7 node-days each): heyuan-01 2 of 3 false, 0.29 per node-day,
    over the 1-per-week budget; beitang-01 1 false, at the budget, not flagged."""
    h, c = site
    as_user(c, "admin")
    page = c.get("/report?start=2026-06-29&end=2026-07-05").text
    table = page.split('id="false-alarms"')[1].split("</table>")[0]
    rows = table.split("<tr ")[1:]
    assert rows[0].startswith('data-node="heyuan-01" data-week="2026-06-29" data-over="true"')
    assert ">3</td>" in rows[0] and ">2</td>" in rows[0] and ">0.29</td>" in rows[0]
    assert "超出预算" in rows[0]
    assert ('href="/report/false-alarms/heyuan-01?start=2026-06-29&amp;end=2026-07-05"'
            in rows[0])
    beitang = next(r for r in rows if 'data-node="beitang-01"' in r)
    assert 'data-over="false"' in beitang and ">0.14</td>" in beitang
    xiatang = next(r for r in rows if 'data-node="xiatang-01"' in r)
    assert ">0</td>" in xiatang and "fa-snapshots" not in xiatang


def test_budget_is_configured(tmp_path: Path, receiver: PageReceiver) -> None:
    """With a budget of 3 a week nobody is flagged."""
    h, c = make_site(tmp_path, receiver, false_alarm_budget=3)
    try:
        incident(h, "heyuan-01", "heyuan-shantang", "false_alarm")
        incident(h, "heyuan-01", "heyuan-shantang", "false_alarm")
        as_user(c, "admin")
        page = c.get("/report?start=2026-06-29&end=2026-07-05").text
        assert 'data-over="false"' in page and 'data-over="true"' not in page
    finally:
        c.close()
        h.close()


def test_snapshots_one_click_away_within_scope_roles_and_retention(site) -> None:
    """The link lists the node's false alarms with their snapshots for the constable; a
    viewer sees no image; a node not in scope (here: unknown) is 404; after retention the
    image is gone."""
    h, c = site
    first, second = h.ids
    as_user(c, "guo")
    page = c.get("/report/false-alarms/heyuan-01?start=2026-06-29&end=2026-07-05").text
    assert f'data-alert-id="{first}"' in page and f'data-alert-id="{second}"' in page
    assert f'src="/alerts/{first}/snapshot.jpg"' in page
    assert f'src="/alerts/{second}/snapshot.jpg"' not in page  # it never had one
    r = c.get(f"/alerts/{first}/snapshot.jpg")
    assert r.status_code == 200 and r.content == JPEG
    assert c.get("/report/false-alarms/nowhere-01").status_code == 404
    assert "超出预算" in c.get("/report?start=2026-06-29&end=2026-07-05").text
    as_user(c, "viewer")
    page = c.get("/report/false-alarms/heyuan-01?start=2026-06-29&end=2026-07-05").text
    assert "snapshot.jpg" not in page and "你的角色不能查看现场照片" in page
    h.clock.advance(31 * 86400)
    assert h.svc.purge_snapshots() >= 1
    as_user(c, "guo")
    page = c.get("/report/false-alarms/heyuan-01?start=2026-06-29&end=2026-07-05").text
    assert "snapshot.jpg" not in page and "照片已按保留期限删除" in page


def test_week_split_counts_node_days_inside_the_period(site) -> None:
    """A period of two days: the same two false alarms are 1.0 per node-day."""
    _, c = site
    as_user(c, "admin")
    page = c.get("/report?start=2026-07-01&end=2026-07-02").text
    row = page.split('data-node="heyuan-01"')[1].split("</tr>")[0]
    assert ">1.00</td>" in row and 'data-over="true"' in row


def test_node_over_budget_pages_the_technicians_once(tmp_path: Path,
                                                      receiver: PageReceiver) -> None:
    """The second 误报 within 7 days from heyuan-01 (budget 1 a week), marked on the alert
    page, opens one task for the technicians, paged as 【运维】; a third adds nothing new."""
    h, c = make_site(tmp_path, receiver)
    try:
        csrf = as_user(c, "guo")
        for n in range(3):
            h.event("person_in_water")
            h.tick()
            aid = h.alert().id
            r = c.post(f"/alerts/{aid}", data={"action": "resolve", "outcome": "false_alarm",
                                               "csrf_token": csrf})
            assert r.status_code == 303, r.text
            h.clock.advance(3600)
            tasks = [a for a in _alerts(h) if a.kind == "false_alarms"]
            assert len(tasks) == (0 if n == 0 else 1)
        h.tick()
        page = receiver.for_path("tech-wang")
        assert [p["title"] for p in page] == ["【运维】禾源山塘：误报过多，请检查设备"]
        task = next(a for a in _alerts(h) if a.kind == "false_alarms")
        assert (task.subject, task.node_id, task.urgent) == ("heyuan-01", "heyuan-01", False)
        as_user(c, "admin")
        assert "7 天内误报 2 次（预算 1 次/周）" in c.get(f"/alerts/{task.id}").text
    finally:
        c.close()
        h.close()


def _alerts(h: Harness) -> list[Alert]:
    with h.svc.sessions() as s:
        return list(s.scalars(select(Alert).order_by(Alert.id)))
