"""What people read: page text in Beijing time with the map link, and the alert's words."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from server.alerting.wording import alert_what, beijing_time, map_link, page_text
from server.core.db import Alert, Pond

POND = Pond(id="heyuan-shantang", name="禾源山塘", village="禾源村", grid_id="gongyu",
            lat=26.33, lon=114.52)


def _alert(kind: str, subject: str = "", urgent: bool = True) -> Alert:
    """An alert row that was never stored (the wording needs no database)."""
    return Alert(id=7, pond_id=POND.id, kind=kind, subject=subject, urgent=urgent,
                 opened_at=datetime(2024, 5, 1, 23, 30, tzinfo=UTC))


def test_urgent_page_text() -> None:
    """Readable in 5 s: what and where first, then Beijing time (next day at 07:30), the link,
    the people seen; then the alert number and step, and the map."""
    alert = _alert("child_near_water")
    alert.child, alert.people_seen = True, 2
    title, body = page_text(alert, POND, "https://pw/a/tok", step=1)
    assert title == "【紧急】禾源山塘：儿童在岸边"
    lines = body.splitlines()
    assert lines == ["儿童在岸边｜禾源山塘（禾源村）", "时间：2024-05-02 07:30:00（北京时间）",
                     "请立即确认：https://pw/a/tok", "画面中共2人", "告警编号 #7，第2次通知",
                     f"地图：{map_link(26.33, 114.52, '禾源山塘')}"]


@pytest.mark.parametrize(("kind", "child", "first"), [
    ("child_near_water", None, "疑似儿童在岸边"),
    ("person_in_water", True, "儿童在水中"),
    ("person_in_water", False, "成人在水中"),
    ("person_in_water", None, "有人在水中"),
    ("person_submerged", True, "儿童没入水中"),
    ("person_submerged", False, "成人没入水中"),
    ("sos", None, "求救按钮被按下"),
])
def test_first_line_says_who_and_where(kind: str, child: bool | None, first: str) -> None:
    """儿童/成人 and 岸边/水中/没入水中 on the first line, before the pond and village."""
    alert = _alert(kind)
    alert.child = child
    assert page_text(alert, POND, "L", 0)[1].splitlines()[0] == f"{first}｜禾源山塘（禾源村）"


def test_upgrade_and_overdue_wording() -> None:
    """It got worse: 已落水 and what it was before; acknowledged but nobody on scene."""
    alert = _alert("person_in_water")
    alert.child, alert.upgraded_from = True, "child_near_water"
    alert.upgraded_at = datetime(2024, 5, 1, 23, 31, tzinfo=UTC)
    title, body = page_text(alert, POND, "L", 0, reason="upgrade")
    assert title == "【紧急·升级】禾源山塘：儿童已落水"
    assert body.splitlines()[:2] == ["儿童已落水｜禾源山塘（禾源村）",
                                     "时间：2024-05-02 07:31:00（北京时间）"]
    assert "情况加重：此前为儿童在岸边" in body and "告警编号 #7，情况加重后重新通知" in body
    alert.acked_at = datetime(2024, 5, 1, 23, 32, tzinfo=UTC)
    title, body = page_text(alert, POND, "L", 1, reason="on_scene_overdue")
    assert title.startswith("【紧急·未到场】")
    assert "已收到（2024-05-02 07:32:00），但至今无人到场" in body


def test_task_page_names_the_kit_item() -> None:
    """A missing lifebuoy is a task for the constable, named in Chinese, without a step."""
    alert = _alert("equipment_missing", "lifebuoy", urgent=False)
    title, body = page_text(alert, POND, "L", step=0)
    assert title == "【待办】禾源山塘：救生圈缺失"
    assert "告警编号 #7" in body.splitlines() and "请查看并处理：L" in body
    assert alert_what(alert) == "救生圈缺失"
    assert alert_what(_alert("something_new")) == "something_new"


def test_beijing_time_and_map_link() -> None:
    """No time is empty text; a pond without coordinates has no map link."""
    assert beijing_time(None) == ""
    assert beijing_time(datetime(2024, 1, 1, tzinfo=UTC)) == "2024-01-01 08:00:00"
    assert map_link(None, 114.5, "x") is None
    assert map_link(26.33, 114.52, "下 塘") == ("https://uri.amap.com/marker?position="
                                                 "114.520000,26.330000&name=%E4%B8%8B%20%E5%A1%98"
                                                 "&coordinate=wgs84")
