"""Page strings in Simplified Chinese (first) and English, and the visitor's language choice."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from server.alerting.wording import ITEM_ZH, KIND_ZH, OUTCOME_ZH, STATE_ZH, beijing_time

LANGS = ("zh", "en")
COOKIE = "pw_lang"

# Words for stored ids: {group: {id: (zh, en)}}; the Chinese comes from server.alerting.wording.
_EN_KIND = {"person_submerged": "Person under water", "child_near_water": "Child near water",
            "person_in_water": "Person in water", "sos": "SOS button pressed",
            "equipment_missing": "Rescue kit missing", "camera_fault": "Camera fault",
            "node_offline": "Node offline",
            "false_alarms": "Too many false alarms: check the node"}
_EN_STATE = {"open": "New", "notified": "Notified", "acknowledged": "Received",
             "on_scene": "On scene", "resolved": "Resolved"}
_EN_OUTCOME = {"real": "Real", "false_alarm": "False alarm", "test": "Test"}
_EN_ITEM = {"lifebuoy": "Lifebuoy", "sign": "Warning sign", "warning_sign": "Warning sign",
            "rope": "Rescue rope", "safety_rope": "Rescue rope", "poles": "Bamboo poles",
            "bamboo_poles": "Bamboo poles"}


def _pair(zh: dict[str, str], en: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Join a Chinese and an English map by key."""
    return {k: (v, en.get(k, k)) for k, v in zh.items()}


WORDS: dict[str, dict[str, tuple[str, str]]] = {
    "kind": {**_pair(KIND_ZH, _EN_KIND),
             "person_near_water": ("有人靠近水边", "Person near water"),
             "event_end": ("事件结束", "Event ended"),
             "equipment_restored": ("器材已恢复", "Kit back in place"),
             "camera_ok": ("摄像头恢复", "Camera working again")},
    "state": _pair(STATE_ZH, _EN_STATE),
    "outcome": _pair(OUTCOME_ZH, _EN_OUTCOME),
    "item": _pair(ITEM_ZH, _EN_ITEM),
    "timeline": {"state": ("状态变更", "State change"), "delivery": ("通知", "Page"),
                 "event": ("事件", "Event"), "note": ("备注", "Note"),
                 "upgrade": ("情况加重", "Got worse"), "link": ("确认链接", "Acknowledge link")},
    "result": {"sent": ("已送达", "Delivered"), "failed": ("失败", "Failed"),
               "ok": ("成功", "OK"), "error": ("出错", "Error"), "skipped": ("跳过", "Skipped")},
    "node": {"online": ("在线", "Online"), "offline": ("离线", "Offline"),
             "unknown": ("未知", "Unknown")},
    "reason": {"planned": ("计划停机", "planned stop"), "lost": ("失联", "connection lost"),
               "missed_heartbeats": ("心跳超时", "missed heartbeats")},
    "kit": {"present": ("在位", "Present"), "missing": ("缺失", "Missing"),
            "unknown": ("未知", "Unknown")},
    "zone": {"water": ("水中", "In water"), "bank": ("岸边", "On the bank")},
    "patrol": {"sent": ("已发送", "Sent"), "failed": ("发送失败", "Failed"),
               "skipped": ("未发送（跳过）", "Skipped"), "sending": ("发送中", "Sending")},
    "role": {"admin": ("管理员", "Admin"), "constable": ("网格民警", "Grid constable"),
             "area_officer": ("片区民警", "Area officer"), "duty_desk": ("值班台", "Duty desk"),
             "technician": ("技术员", "Technician"), "viewer": ("只读", "Viewer"),
             "primary": ("主责", "Primary"), "backup": ("备岗", "Backup")},
    "cmd": {"snapshot": ("拍照", "Snapshot"), "selftest": ("自检", "Self-test"),
            "horn_test": ("喇叭测试", "Horn test"), "enrol": ("重新登记器材", "Re-enrol kit"),
            "restart": ("重启", "Restart"), "logs": ("日志", "Logs")},
    "field": {"id": ("编号", "Id"), "name": ("名称", "Name"),
              "duty_desk": ("值班台人员", "Duty desk"),
              "area_officers": ("片区民警", "Area officers"), "station": ("派出所", "Station"),
              "constable": ("网格民警", "Constable"), "backup": ("备岗", "Backup"),
              "policy": ("升级策略", "Escalation policy"), "village": ("村庄", "Village"),
              "grid": ("网格", "Grid"), "lat": ("纬度", "Latitude"), "lon": ("经度", "Longitude"),
              "pond": ("池塘", "Pond"), "role": ("角色", "Role"), "phone": ("电话", "Phone"),
              "notify": ("通知地址", "Notify URLs"), "stations": ("负责派出所", "Stations"),
              "person": ("人员", "Person"), "starts": ("开始", "Starts"), "ends": ("结束", "Ends")},
    "registry": {"stations": ("派出所", "Stations"), "grids": ("网格", "Grids"),
                 "ponds": ("池塘", "Ponds"), "nodes": ("设备", "Nodes"),
                 "people": ("人员", "People"), "rosters": ("排班", "Rosters")},
}

STRINGS: dict[str, tuple[str, str]] = {
    "app": ("池塘守护", "PondWatch"),
    "nav.alerts": ("告警", "Alerts"), "nav.ponds": ("池塘", "Ponds"), "nav.map": ("地图", "Map"),
    "nav.fleet": ("设备", "Fleet"), "nav.report": ("报表", "Reports"),
    "nav.silences": ("静默", "Silences"), "nav.admin": ("管理", "Admin"),
    "logout": ("退出", "Sign out"), "other_lang": ("English", "中文"),
    "login.title": ("登录", "Sign in"), "login.user": ("用户名", "User name"),
    "login.password": ("密码", "Password"), "login.wrong": ("用户名或密码错误",
                                                           "Wrong user name or password"),
    "alerts.title": ("告警", "Alerts"), "alerts.open_first": ("未处理的在前", "Open ones first"),
    "alerts.none": ("暂无告警", "No alerts"), "alerts.live": ("实时更新中", "Live"),
    "alerts.offline": ("实时连接中断，正在重连…", "Live updates lost, reconnecting…"),
    "alerts.active": ("未处理", "Open"), "alerts.all": ("全部", "All"),
    "col.time": ("时间", "Time"), "col.pond": ("池塘", "Pond"), "col.village": ("村庄", "Village"),
    "col.kind": ("类型", "Kind"), "col.state": ("状态", "State"), "col.count": ("次数", "Events"),
    "col.person": ("人员", "Person"), "col.detail": ("说明", "Detail"),
    "col.channel": ("渠道", "Channel"), "col.result": ("结果", "Result"),
    "col.node": ("设备", "Node"), "col.grid": ("网格", "Grid"),
    "silenced": ("静默中", "Silenced"), "bj": ("北京时间", "Beijing time"),
    "alert.item_missing": ("{}缺失", "{} missing"),
    "alert.snapshot": ("现场照片", "Snapshot"), "alert.nosnap": ("暂无现场照片", "No snapshot"),
    "alert.snap_hidden": ("您的角色不能查看现场照片", "Your role may not see snapshots"),
    "alert.timeline": ("时间线", "Timeline"), "alert.events": ("事件", "Events"),
    "alert.actions": ("处置", "Actions"), "alert.map": ("在地图中打开", "Open map"),
    "alert.opened": ("开始", "Opened"), "alert.stature": ("身高", "Height"),
    "alert.child_guess": ("未标定（按儿童处理）", "Not calibrated (treated as a child)"),
    "alert.read_only": ("您只能查看，不能处置", "You may view, not act"),
    "act.ack": ("已收到", "Received"), "act.on_scene": ("已到场", "On scene"),
    "act.resolve": ("已处理", "Resolved"), "act.by": ("处置人", "By"),
    "ponds.title": ("池塘与器材", "Ponds and rescue kit"), "ponds.watch": ("看护", "Watch"),
    "ponds.kit": ("器材", "Kit"), "ponds.last_event": ("最近事件", "Last event"),
    "ponds.ok": ("正常", "Watched"), "ponds.blind": ("无法看护", "Not watched"),
    "ponds.no_node": ("无设备", "No node"),
    "ponds.silent": ("无法看护：设备从未上线", "Not watched: node never came online"),
    "ponds.stopped": ("无法看护：设备计划停机", "Not watched: node stopped as planned"),
    "ponds.snapshot": ("立即拍照", "Snapshot now"),
    "ponds.latest_snapshot": ("最新拍照", "Latest snapshot"),
    "ponds.since": ("自", "since"), "ponds.sent": ("已发送拍照指令", "Snapshot requested"),
    "map.title": ("池塘地图", "Pond map"), "map.no_coords": ("无坐标", "No coordinates"),
    "map.plain": ("无底图：按经纬度绘制", "No tiles: plotted by coordinates"),
    "fleet.title": ("设备状态", "Fleet"), "fleet.last_seen": ("最后联系", "Last seen"),
    "fleet.fps": ("帧率", "FPS"), "fleet.temp": ("温度", "Temperature"),
    "fleet.throttled": ("降频", "Throttled"), "fleet.outbox": ("待发", "Outbox"),
    "fleet.model": ("模型", "Model"), "fleet.version": ("版本", "Version"),
    "fleet.camera": ("摄像头", "Camera"), "fleet.history": ("健康历史", "Health history"),
    "fleet.commands": ("远程指令", "Commands"), "fleet.answer": ("设备回复", "Node's answer"),
    "fleet.waiting": ("等待设备回复…", "Waiting for the node…"),
    "fleet.no_history": ("暂无心跳记录", "No heartbeats yet"),
    "fleet.expired": ("未回复（已过期）", "No answer (expired)"),
    "fleet.confirm": ("确定要", "Really "), "fleet.sent_at": ("发送时间", "Sent"),
    "fleet.by": ("发送人", "By"),
    "fleet.format": ("格式", "Format"), "fleet.assigned": ("指派模型", "Assigned model"),
    "fleet.mismatch": ("模型与指派不符", "Model differs from the assigned one"),
    "fleet.unassigned": ("未指派", "none assigned"),
    "yes": ("是", "yes"), "no": ("否", "no"),
    "report.title": ("1-3-5 快速响应报表", "1-3-5 minute report"),
    "report.weekly": ("每周各池塘告警数", "Alerts per pond per week"),
    "report.missing": ("缺失器材", "Missing kit"), "report.week": ("周", "Week"),
    "report.period": ("时段", "Period"), "report.start": ("开始", "From"),
    "report.end": ("结束", "To"), "report.show": ("查询", "Show"),
    "report.csv": ("下载明细 CSV", "Details CSV"), "report.summary_csv": ("下载汇总 CSV",
                                                                        "Summary CSV"),
    "report.weekly_csv": ("下载每周 CSV", "Weekly CSV"),
    "report.rule": ("1 分钟内确认、3 分钟内到场（核心区）、5 分钟内到场；不含静默和测试告警。",
                    "Acknowledged within 1 min, on scene within 3 min (core area) and 5 min; "
                    "silenced and test alerts left out."),
    "report.group": ("范围", "Group"), "report.alerts": ("告警数", "Alerts"),
    "report.ack1": ("1分钟确认", "Ack ≤ 1 min"), "report.scene3": ("3分钟到场", "On scene ≤ 3 min"),
    "report.scene5": ("5分钟到场", "On scene ≤ 5 min"), "report.details": ("明细", "Details"),
    "report.ack_time": ("确认用时", "To acknowledge"),
    "report.scene_time": ("到场用时", "To scene"),
    "report.total": ("合计", "Total"), "report.no_missing": ("没有缺失的器材", "No kit missing"),
    "report.no_alerts": ("此时段没有告警", "No alerts in this period"),
    "seconds": ("秒", "s"),
    "silences.title": ("静默（维护窗口）", "Silences (maintenance windows)"),
    "silences.new": ("新建静默", "New silence"), "silences.pond": ("池塘", "Pond"),
    "silences.node": ("或单个设备", "or one node"), "silences.minutes": ("时长（分钟）", "Minutes"),
    "silences.reason": ("原因", "Reason"), "silences.submit": ("静默", "Silence"),
    "silences.by": ("创建人", "By"), "silences.any": ("（不选）", "(none)"),
    "silences.note": ("事件照常记录和显示，但不通知任何人。",
                      "Events are recorded and shown; nobody is paged."),
    "admin.title": ("登记信息管理", "Registry"), "admin.save": ("保存", "Save"),
    "admin.add": ("新增", "Add"), "admin.import": ("导入 YAML/CSV", "Import YAML/CSV"),
    "admin.export": ("导出 YAML", "Export YAML"), "admin.saved": ("已保存", "Saved"),
    "admin.imported": ("已导入", "Imported"), "admin.error": ("未保存：", "Not saved: "),
    "admin.edit": ("编辑", "Edit"), "admin.delete": ("删除", "Delete"),
    "fa.title": ("误报（每台设备每周）", "False alarms per node and week"),
    "fa.hint": ("误报率 = 误报数 ÷ 设备天数；每台设备每周超过 {budget} 次误报即标出，请技术员检查"
                "（画面区域、模型、摄像头角度）。",
                "Rate = false alarms per node-day; a node above {budget} per week is flagged "
                "for a technician (zones, model, camera angle)."),
    "fa.node": ("设备", "Node"), "fa.week": ("周（周一）", "Week (Monday)"),
    "fa.critical": ("紧急告警", "Critical alerts"), "fa.false": ("误报", "False alarms"),
    "fa.rate": ("误报/设备天", "False per node-day"), "fa.over": ("超出预算", "Over budget"),
    "fa.snapshots": ("查看误报照片", "See their snapshots"),
    "fa.page": ("误报照片", "False alarm snapshots"),
    "fa.none": ("这段时间没有误报。", "No false alarms in this period."),
    "fa.purged": ("照片已按保留期限删除", "Snapshot deleted after the retention period"),
    "fa.snapshot_alt": ("误报现场照片", "Snapshot of the false alarm"),
    "fa.no_snapshots_role": ("你的角色不能查看现场照片。", "Your role cannot see snapshots."),
    "patrol.title": ("每日巡查单", "Morning patrol lists"),
    "patrol.hint": ("最近的记录；未发送（跳过）和发送失败的标出。",
                    "Most recent first; skipped and failed lists are marked."),
    "patrol.day": ("日期", "Day"), "patrol.person": ("收件人", "To"),
    "patrol.status": ("结果", "Result"), "patrol.channel": ("通知方式", "Channel"),
    "patrol.detail": ("说明", "Detail"), "patrol.none": ("尚未发送过巡查单。", "No list sent yet."),
    "admin.list_hint": ("多个值用 ; 分隔", "Separate values with ;"),
    "admin.import_hint": ("与命令行导入相同的校验：有一处错误则全部不导入。",
                          "Validated like the command-line import: one bad field and nothing "
                          "is imported."),
    "none": ("无", "none"), "unknown": ("未知", "unknown"),
}


def lang_of(request: Request) -> str:
    """?lang= wins, then the cookie, then Chinese."""
    q = request.query_params.get("lang")
    if q in LANGS:
        return q
    c = request.cookies.get(COOKIE)
    return c if c in LANGS else "zh"


def keep_lang(request: Request, response: Response) -> Response:
    """Remember an explicit ?lang= choice in a cookie (one year)."""
    q = request.query_params.get("lang")
    if q in LANGS and request.cookies.get(COOKIE) != q:
        response.set_cookie(COOKIE, q, max_age=365 * 86400, samesite="lax", httponly=True)
    return response


def translator(lang: str) -> Callable[[str], str]:
    """t(key) for one language; an unknown key shows itself (so gaps are visible)."""
    i = 1 if lang == "en" else 0
    return lambda key: STRINGS[key][i] if key in STRINGS else key


def worder(lang: str) -> Callable[[str, str | None], str]:
    """w(group, id): a stored id as a word; unknown ids stay as they are."""
    i = 1 if lang == "en" else 0

    def w(group: str, value: str | None) -> str:
        """One id in words."""
        if value is None:
            return ""
        pair = WORDS.get(group, {}).get(value)
        return pair[i] if pair else value
    return w


def context(request: Request) -> dict[str, Any]:
    """Template globals: lang, t(), w() and the link to the other language."""
    lang = lang_of(request)
    other = "en" if lang == "zh" else "zh"
    return {"lang": lang, "t": translator(lang), "w": worder(lang), "local": beijing_time,
            "other_lang_url": str(request.url.include_query_params(lang=other))}


_TARGETS = {"constable": ("网格民警", "constable"), "backup": ("备岗", "backup"),
            "area_officers": ("片区民警", "area officers"), "duty_desk": ("值班台", "duty desk"),
            "technicians": ("技术员", "technicians")}
_PATTERNS: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"^folded event \S+(?: \((?P<k>\w+)\))?$"), "又一次事件并入此告警{k}",
     "Another event folded in{k}"),
    (re.compile(r"^(?P<k0>\w+) -> (?P<k>\w+)$"), "情况加重：{k0} → {k}，立即重新通知",
     "Got worse: {k0} → {k}, paging again now"),
    (re.compile(r"^worse \((?P<kw>\w+)\): to be acknowledged again$"),
     "情况加重（{kw}），需重新确认", "Worse ({kw}): to be acknowledged again"),
    (re.compile(r"^silence over: paging$"), "静默已结束，开始通知", "Silence over: paging"),
    (re.compile(r"^event \S+ ended: ?(?P<r>.*)$"), "事件结束 {r}", "Event ended {r}"),
    (re.compile(r"^cleared by the node$"), "设备确认已恢复", "Cleared by the node"),
    (re.compile(r"^by (?P<who>[^,]+)(?:, (?P<o>\w+))?$"), "{who}{o}", "{who}{o}"),
    (re.compile(r"^silenced: ?(?P<r>.*)$"), "静默中，不通知：{r}", "Silenced, nobody paged: {r}"),
    (re.compile(r"^step (?P<n>\d+)$"), "第 {n} 级通知", "Escalation step {n}"),
    (re.compile(r"^step (?P<n>\d+): no channels$"), "第 {n} 级：没有可用的通知方式",
     "Step {n}: no way to reach them"),
    (re.compile(r"^step (?P<n>\d+): (?P<t>[\w,]+) -> (?P<p>.*)$"), "第 {n} 级：通知{t}：{p}",
     "Step {n}: paging {t}: {p}"),
    (re.compile(r"^step (?P<n>\d+) \(upgrade\): (?P<t>[\w,]+) -> (?P<p>.*)$"),
     "情况加重，从第 {n} 级重新通知{t}：{p}", "Worse: paging step {n} again, {t}: {p}"),
    (re.compile(r"^step (?P<n>\d+) \(on_scene_overdue\): (?P<t>[\w,]+) -> (?P<p>.*)$"),
     "已收到但无人到场，第 {n} 级：通知{t}：{p}",
     "Acknowledged, nobody on scene: step {n}, paging {t}: {p}"),
    (re.compile(r"^(?P<c>\d+) false alarms in 7 days \(budget (?P<b>[\d.]+)\)$"),
     "7 天内误报 {c} 次（预算 {b} 次/周）", "{c} false alarms in 7 days (budget {b} a week)"),
    (re.compile(r"^quiet hours until (?P<q>\S+)$"), "免打扰时段，{q} 再通知",
     "Quiet hours: paging at {q}"),
    (re.compile(r"^unreachable: next step now$"), "无人可通知，立即升级",
     "Nobody reachable: next step now"),
    (re.compile(r"^no heartbeat for (?P<s>\d+) s \((?P<m>\d+) missed\)"
                r"(?:; last heartbeat (?P<l>\d+) s ago)?$"),
     "{s} 秒没有心跳（漏 {m} 次）", "No heartbeat for {s} s ({m} missed)"),
]


def describe(detail: str, lang: str, names: dict[str, str]) -> str:
    """A timeline detail written by the server, in words, with people by name."""
    i = 1 if lang == "en" else 0
    w = worder(lang)
    for pattern, zh, en in _PATTERNS:
        m = pattern.match(detail)
        if m is None:
            continue
        g = {k: v or "" for k, v in m.groupdict().items()}
        if "n" in g:
            g["n"] = str(int(g["n"]) + 1)
        if "who" in g:
            g["who"] = names.get(g["who"], g["who"])
        if "o" in g:
            g["o"] = f"（{w('outcome', g['o'])}）" if g["o"] else ""
        if "k0" in g:  # an upgrade: both kinds in words
            g["k0"], g["k"] = w("kind", g["k0"]), w("kind", g["k"])
        elif "k" in g:  # a folded event's kind, in brackets
            g["k"] = f"（{w('kind', g['k'])}）" if g["k"] else ""
        if "q" in g:  # an ISO time: Beijing wall clock
            g["q"] = beijing_time(datetime.fromisoformat(g["q"]))
        if "kw" in g:
            g["kw"] = w("kind", g["kw"])
        if "t" in g:
            g["t"] = "、".join(_TARGETS.get(x, (x, x))[i] for x in g["t"].split(","))
        if "p" in g:
            g["p"] = "、".join(names.get(x, x) for x in g["p"].split(",")) if g["p"] != "nobody" \
                else ("无人" if i == 0 else "nobody")
        return (en if i else zh).format(**g)
    return detail
