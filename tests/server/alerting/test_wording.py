"""What people read: page text in Beijing time with the map link, and the alert's words."""

from __future__ import annotations

from datetime import UTC, datetime

from server.alerting.wording import alert_what, beijing_time, map_link, page_text
from server.core.db import Alert, Pond

POND = Pond(id="heyuan-shantang", name="禾源山塘", village="禾源村", grid_id="gongyu",
            lat=26.33, lon=114.52)


def _alert(kind: str, subject: str = "", urgent: bool = True) -> Alert:
    """An alert row that was never stored (the wording needs no database)."""
    return Alert(id=7, pond_id=POND.id, kind=kind, subject=subject, urgent=urgent,
                 opened_at=datetime(2024, 5, 1, 23, 30, tzinfo=UTC))


def test_urgent_page_text() -> None:
    """An urgent page: tag, pond, what, Beijing time (next day at 07:30), step, link, map."""
    title, body = page_text(_alert("child_near_water"), POND, "https://pw/a/tok", step=1)
    assert title == "【紧急】禾源山塘：儿童靠近水边"
    lines = body.splitlines()
    assert lines[:4] == ["禾源山塘（禾源村）", "儿童靠近水边",
                         "时间：2024-05-02 07:30:00（北京时间）", "告警编号 #7，第2次通知"]
    assert lines[4] == "请立即确认：https://pw/a/tok"
    assert lines[5] == f"地图：{map_link(26.33, 114.52, '禾源山塘')}"


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
