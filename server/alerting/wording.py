"""Words people read: Beijing time, the map link, page text, Chinese names of kinds and states."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from server.alerting import alerts
from server.core.db import Alert, Pond

BEIJING = timezone(timedelta(hours=8))
KIND_ZH = {
    "person_submerged": "有人没入水中", "child_near_water": "儿童靠近水边",
    "person_in_water": "有人在水中", "sos": "求救按钮被按下",
    "equipment_missing": "救援器材缺失", "camera_fault": "摄像头故障",
    alerts.NODE_OFFLINE: "设备离线",
}
STATE_ZH = {"open": "新告警", "notified": "已通知", "acknowledged": "已收到",
            "on_scene": "已到场", "resolved": "已处理"}
OUTCOME_ZH = {"real": "真实", "false_alarm": "误报", "test": "测试"}
ITEM_ZH = {"lifebuoy": "救生圈", "sign": "警示牌", "warning_sign": "警示牌", "rope": "救生绳",
           "safety_rope": "救生绳", "poles": "竹竿", "bamboo_poles": "竹竿"}


def beijing_time(ts: datetime | None) -> str:
    """A time as Beijing wall-clock text (empty for none), as pages and screens show it."""
    return ts.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def alert_what(alert: Alert) -> str:
    """The alert kind in Chinese, with the item for equipment."""
    if alert.kind == "equipment_missing":
        return f"{ITEM_ZH.get(alert.subject, alert.subject)}缺失"
    return KIND_ZH.get(alert.kind, alert.kind)


def map_link(lat: float | None, lon: float | None, name: str) -> str | None:
    """An Amap marker link for the pond's WGS-84 coordinates."""
    if lat is None or lon is None:
        return None
    return (f"https://uri.amap.com/marker?position={lon:.6f},{lat:.6f}"
            f"&name={quote(name)}&coordinate=wgs84")


def page_text(alert: Alert, pond: Pond, link: str, step: int) -> tuple[str, str]:
    """Title and body of a page, in Simplified Chinese, with the acknowledge link."""
    what = alert_what(alert)
    if alert.urgent:
        tag = "【紧急】"
    else:
        tag = "【待办】" if alert.kind == "equipment_missing" else "【运维】"
    title = f"{tag}{pond.name}：{what}"
    when = beijing_time(alert.opened_at)
    lines = [f"{pond.name}（{pond.village}）" if pond.village else pond.name,
             what, f"时间：{when}（北京时间）",
             f"告警编号 #{alert.id}" + (f"，第{step + 1}次通知" if alert.urgent else "")]
    if alert.urgent:
        lines.append(f"请立即确认：{link}")
    else:
        lines.append(f"请查看并处理：{link}")
    maplink = map_link(pond.lat, pond.lon, pond.name)
    if maplink:
        lines.append(f"地图：{maplink}")
    return title, "\n".join(lines)
