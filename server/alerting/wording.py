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
    alerts.NODE_OFFLINE: "设备离线", alerts.FALSE_ALARMS: "误报过多，请检查设备",
}
STATE_ZH = {"open": "新告警", "notified": "已通知", "acknowledged": "已收到",
            "on_scene": "已到场", "resolved": "已处理"}
OUTCOME_ZH = {"real": "真实", "false_alarm": "误报", "test": "测试"}
ITEM_ZH = {"lifebuoy": "救生圈", "sign": "警示牌", "warning_sign": "警示牌", "rope": "救生绳",
           "safety_rope": "救生绳", "poles": "竹竿", "bamboo_poles": "竹竿"}


def quiet_until(quiet_hours: str | None, now: datetime) -> datetime | None:
    """When the Beijing quiet hours (HH:MM-HH:MM, may span midnight) holding `now` end, or
    None when now is outside them (or none are set)."""
    if not quiet_hours:
        return None
    start_s, end_s = quiet_hours.split("-")
    local = now.astimezone(BEIJING)
    start = local.replace(hour=int(start_s[:2]), minute=int(start_s[3:]), second=0,
                          microsecond=0)
    end = local.replace(hour=int(end_s[:2]), minute=int(end_s[3:]), second=0, microsecond=0)
    if start == end:
        return None
    if start < end:  # same day, e.g. 12:00-14:00
        return end if start <= local < end else None
    if local >= start:  # spans midnight, e.g. 22:00-07:00: evening part
        return end + timedelta(days=1)
    return end if local < end else None


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


def who_zh(alert: Alert) -> str:
    """儿童 / 成人 / 有人: who is involved, as far as the node could tell."""
    return {True: "儿童", False: "成人"}.get(alert.child, "有人")  # type: ignore[arg-type]


def headline(alert: Alert, kind: str | None = None) -> str:
    """What happened in a few words: who and where (岸边/水中/没入水中), or that it got worse
    (儿童已落水); for other kinds their Chinese name. kind: an earlier kind of the alert."""
    who = who_zh(alert)
    worse = kind is None and alert.upgraded_from is not None
    kind = kind or alert.kind
    if kind == "child_near_water":
        return "儿童在岸边" if alert.child else "疑似儿童在岸边"
    if kind == "person_in_water":
        return f"{who}已落水" if worse else f"{who}在水中"
    if kind == "person_submerged":
        return f"{who}已没入水中" if worse else f"{who}没入水中"
    return KIND_ZH.get(kind, kind) if kind != alert.kind else alert_what(alert)


def page_text(alert: Alert, pond: Pond, link: str, step: int,
              reason: str = "step") -> tuple[str, str]:
    """Title and body of a page in Simplified Chinese, readable in five seconds: what and
    where first, then the time, the acknowledge link and how many people were seen.

    reason is the delivery's: 'upgrade' (it got worse; previous names the milder kind),
    'on_scene_overdue' (acknowledged, nobody on scene in time), else a plain step."""
    previous = headline(alert, alert.upgraded_from) if alert.upgraded_from else None
    place = f"{pond.name}（{pond.village}）" if pond.village else pond.name
    what = headline(alert) if alert.urgent else alert_what(alert)
    if alert.urgent:
        tag = "【紧急·升级】" if reason == "upgrade" else (
            "【紧急·未到场】" if reason == "on_scene_overdue" else "【紧急】")
    else:
        tag = "【待办】" if alert.kind == "equipment_missing" else "【运维】"
    title = f"{tag}{pond.name}：{what}"
    since = alert.upgraded_at if alert.urgent and alert.upgraded_at else alert.opened_at
    lines = [f"{what}｜{place}", f"时间：{beijing_time(since)}（北京时间）"]
    if alert.urgent:
        lines.append(f"请立即确认：{link}")
        if alert.people_seen:
            lines.append(f"画面中共{alert.people_seen}人")
        if previous:
            lines.append(f"情况加重：此前为{previous}")
        if reason == "on_scene_overdue":
            lines.append(f"已收到（{beijing_time(alert.acked_at)}），但至今无人到场，请尽快赶到")
        lines.append(f"告警编号 #{alert.id}，" + (
            "情况加重后重新通知" if reason == "upgrade" else f"第{step + 1}次通知"))
    else:
        lines.append(f"请查看并处理：{link}")
        lines.append(f"告警编号 #{alert.id}")
    maplink = map_link(pond.lat, pond.lon, pond.name)
    if maplink:
        lines.append(f"地图：{maplink}")
    return title, "\n".join(lines)
