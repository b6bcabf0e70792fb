"""The morning patrol list (巡查单): a constable's ponds, an area officer's grids, daily."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date, datetime, time, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from server.alerting.escalation import on_duty
from server.alerting.wording import (
    BEIJING,
    ITEM_ZH,
    OUTCOME_ZH,
    STATE_ZH,
    alert_what,
    headline,
)
from server.core.clock import Clock
from server.core.config import PatrolSettings
from server.core.db import Alert, EquipmentState, Grid, Node, PatrolRun, Person, Pond, Station

log = logging.getLogger(__name__)
Reach = Callable[[list[str], str, str], list[tuple[str, bool]]]
REASON_ZH = {"planned": "计划停机", "lost": "失联", "missed_heartbeats": "心跳中断"}
CHECK_EVERY_S = 30.0
RETRY_FAILED_S = 900.0  # a list nobody could be reached with is tried again this often


def _hm(t: datetime | None) -> str:
    """Beijing month-day hour:minute, or empty."""
    return t.astimezone(BEIJING).strftime("%m-%d %H:%M") if t else ""


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """A Beijing calendar day as [start, end) instants."""
    start = datetime.combine(day, time(0, 0), BEIJING)
    return start, start + timedelta(days=1)


def constable_grids(s: Session, person_id: str, now: datetime) -> list[Grid]:
    """Grids whose patrol falls to this person now (the roster's primary, else the grid's
    constable)."""
    grids = s.scalars(select(Grid).order_by(Grid.id)).all()
    return [g for g in grids if on_duty(s, g, "primary", now) == person_id]


def _pond_lines(s: Session, pond: Pond, day: date, now: datetime) -> tuple[list[str], int]:
    """The lines about one pond and how many things on it need someone (kit, nodes, faults)."""
    lines = [f"■ {pond.name}" + (f"（{pond.village}）" if pond.village else "")]
    todo = 0
    kit = s.scalars(select(EquipmentState).where(EquipmentState.pond_id == pond.id)
                    .order_by(EquipmentState.item)).all()
    missing = [k for k in kit if k.state == "missing"]
    present = [ITEM_ZH.get(k.item, k.item) for k in kit if k.state == "present"]
    for k in missing:
        lines.append(f"  器材：{ITEM_ZH.get(k.item, k.item)}缺失（自 {_hm(k.since)}）")
    if present:
        lines.append(f"  器材齐全：{'、'.join(present)}" if not missing else
                     f"  器材在位：{'、'.join(present)}")
    if not kit:
        lines.append("  器材：尚无检查结果")
    todo += len(missing)
    for node in s.scalars(select(Node).where(Node.pond_id == pond.id).order_by(Node.id)):
        if node.state == "online":
            lines.append(f"  设备 {node.id}：在线")
        elif node.state == "offline":
            why = REASON_ZH.get(node.state_reason or "", "离线")
            lines.append(f"  设备 {node.id}：离线（{why}，自 {_hm(node.state_at)}）")
            todo += node.state_reason != "planned"
        else:
            lines.append(f"  设备 {node.id}：从未上线")
            todo += 1
    start, end = day_bounds(day - timedelta(days=1))
    seen = s.scalars(select(Alert).where(Alert.pond_id == pond.id, Alert.urgent,
                                         Alert.opened_at >= start, Alert.opened_at < end)
                     .order_by(Alert.opened_at)).all()
    for a in seen:
        how = OUTCOME_ZH.get(a.outcome or "", "") if a.state == "resolved" else \
            STATE_ZH.get(a.state, a.state)
        lines.append(f"  昨日告警 {_hm(a.opened_at)} {headline(a)}：{how or '已处理'}")
    if not seen:
        lines.append("  昨日告警：无")
    for a in s.scalars(select(Alert).where(Alert.pond_id == pond.id, ~Alert.urgent,
                                           Alert.state != "resolved",
                                           Alert.kind != "equipment_missing")):
        lines.append(f"  待技术员处理：{alert_what(a)}（自 {_hm(a.opened_at)}）")
        todo += 1
    return lines, todo


def constable_list(s: Session, person: Person, day: date, now: datetime) -> tuple[str, str]:
    """Title and body of one constable's list for day."""
    ponds = [p for g in constable_grids(s, person.id, now)
             for p in s.scalars(select(Pond).where(Pond.grid_id == g.id).order_by(Pond.id))]
    body = [f"{person.name}，早上好。今日巡查单（{day.isoformat()}，共{len(ponds)}处水域）"]
    parts = [_pond_lines(s, pond, day, now) for pond in ponds]
    parts.sort(key=lambda part: -part[1])  # ponds that need something first
    todo = 0
    for lines, n in parts:
        body += lines
        todo += n
    body.append(f"需处理事项：{todo}项" if todo else "需处理事项：无")
    return f"【巡查单】{day.month}月{day.day}日 {len(ponds)}处水域，{todo}项需处理", \
        "\n".join(body)


def officer_list(s: Session, person: Person, day: date, now: datetime) -> tuple[str, str]:
    """Title and body of an area officer's summary of their stations' grids for day."""
    stations = [st.id for st in s.scalars(select(Station))
                if person.id in (st.area_officers or [])]
    grids = s.scalars(select(Grid).where(Grid.station_id.in_(stations)).order_by(Grid.id)).all()
    start, end = day_bounds(day - timedelta(days=1))
    body = [f"{person.name}，早上好。辖区巡查汇总（{day.isoformat()}，{len(grids)}个网格）"]
    for g in grids:
        ponds = list(s.scalars(select(Pond.id).where(Pond.grid_id == g.id)))
        missing = len(s.scalars(select(EquipmentState).where(
            EquipmentState.pond_id.in_(ponds), EquipmentState.state == "missing")).all())
        down = [n for n in s.scalars(select(Node).where(Node.pond_id.in_(ponds)))
                if n.state == "offline" and n.state_reason != "planned"]
        seen = s.scalars(select(Alert).where(Alert.pond_id.in_(ponds), Alert.urgent,
                                             Alert.opened_at >= start,
                                             Alert.opened_at < end)).all()
        false = sum(a.outcome == "false_alarm" for a in seen)
        open_ = len(s.scalars(select(Alert).where(Alert.pond_id.in_(ponds), Alert.urgent,
                                                  Alert.state != "resolved")).all())
        constable = s.get(Person, g.constable_id) if g.constable_id else None
        who = constable.name if constable else "未设网格民警"
        body.append(f"■ {g.name}（{who}）：水域{len(ponds)}处，"
                    f"器材缺失{missing}件，设备异常离线{len(down)}台，昨日告警{len(seen)}起"
                    f"（误报{false}起），未处理告警{open_}起")
    return f"【巡查汇总】{day.month}月{day.day}日 {len(grids)}个网格", "\n".join(body)


class Patrol:
    """Sends the lists once a day at patrol.at (Beijing), records each as a PatrolRun; days
    the server missed are recorded as skipped, so the admin page shows them."""

    def __init__(self, cfg: PatrolSettings, sessions: sessionmaker[Session], clock: Clock,
                 reach: Reach) -> None:
        """reach(urls, title, body) delivers on a person's channels (the pager's)."""
        self.cfg, self.sessions, self.clock, self.reach = cfg, sessions, clock, reach
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watching: date | None = None

    def due_at(self, day: date) -> datetime:
        """When the list of day goes out."""
        hh, mm = (int(x) for x in self.cfg.at.split(":"))
        return datetime.combine(day, time(hh, mm), BEIJING)

    def recipients(self, s: Session, now: datetime) -> list[tuple[Person, str]]:
        """(person, 'constable' | 'area_officer') for everyone who gets a list now."""
        out: list[tuple[Person, str]] = []
        for p in s.scalars(select(Person).order_by(Person.id)):
            if constable_grids(s, p.id, now):
                out.append((p, "constable"))
            elif p.role == "area_officer":
                out.append((p, "area_officer"))
        return out

    def check(self) -> int:
        """Record missed days, send today's lists when due; returns lists sent.

        A fresh installation (no list recorded before today) starts its record on its first
        morning: days before it are not 'skipped', and a first start after today's `at`
        records today as skipped instead of sending a list nobody expected at that hour."""
        if not self.cfg.enabled:
            return 0
        now = self.clock.now()
        today = now.astimezone(BEIJING).date()
        if now < self.due_at(today):
            self._watching = today  # this process saw today's morning coming
        with self.sessions() as s:
            established = s.scalar(select(PatrolRun.id).where(
                PatrolRun.day < today.isoformat()).limit(1)) is not None
            people = [(p.id, role) for p, role in self.recipients(s, now)]
            runs = s.scalars(select(PatrolRun).where(
                PatrolRun.day >= (today - timedelta(days=self.cfg.lookback_days)).isoformat()))
            done = {(r.day, r.person_id) for r in runs}
            again = {r.person_id for r in s.scalars(select(PatrolRun).where(
                PatrolRun.day == today.isoformat(), PatrolRun.status == "failed",
                PatrolRun.sent_at <= now - timedelta(seconds=RETRY_FAILED_S)))}
        for back in range(self.cfg.lookback_days if established else 0, 0, -1):
            day = today - timedelta(days=back)  # days the server was not running
            for pid, _ in people:
                if (day.isoformat(), pid) not in done:
                    self._record(day, pid, "skipped", "服务器未在发送时间运行")
        if now < self.due_at(today):
            return 0
        late = now > self.due_at(today) + timedelta(minutes=self.cfg.late_by_min)
        first_start = not established and self._watching != today
        sent = 0
        for pid, role in people:
            if pid in again and not late and self._reclaim(today, pid):
                sent += self._send(today, pid, role, now)
                continue
            if (today.isoformat(), pid) in done:
                continue
            if first_start:
                self._record(today, pid, "skipped", "首次启动晚于发送时间，从明天开始发送")
            elif late:
                self._record(today, pid, "skipped",
                             f"晚于发送时间 {self.cfg.late_by_min} 分钟以上，不再补发")
            elif self._claim(today, pid):
                sent += self._send(today, pid, role, now)
        return sent

    def _record(self, day: date, person_id: str, status: str, detail: str) -> bool:
        """Insert one run row; False when another replica (or call) already has it."""
        try:
            with self.sessions() as s, s.begin():
                s.add(PatrolRun(day=day.isoformat(), person_id=person_id, status=status,
                                detail=detail, created_at=self.clock.now()))
        except IntegrityError:
            return False
        return True

    def _reclaim(self, day: date, person_id: str) -> bool:
        """Take a failed list back for another try (a conditional update: once)."""
        with self.sessions() as s, s.begin():
            res = s.execute(update(PatrolRun).where(
                PatrolRun.day == day.isoformat(), PatrolRun.person_id == person_id,
                PatrolRun.status == "failed").values(status="sending")
                .execution_options(synchronize_session=False))
        return getattr(res, "rowcount", 0) == 1

    def _claim(self, day: date, person_id: str) -> bool:
        """Take the list of day for person (the unique row is the claim)."""
        return self._record(day, person_id, "sending", "")

    def _send(self, day: date, person_id: str, role: str, now: datetime) -> int:
        """Write and deliver one list; record sent or failed; 1 if it went out."""
        with self.sessions() as s:
            person = s.get(Person, person_id)
            assert person is not None
            maker = constable_list if role == "constable" else officer_list
            title, body = maker(s, person, day, now)
            urls = list(person.notify or [])
        results = self.reach(urls, title, body) if urls else []
        ok = any(r for _, r in results)
        channel = next((c for c, r in results if r), results[-1][0] if results else None)
        with self.sessions() as s, s.begin():
            run = s.scalars(select(PatrolRun).where(PatrolRun.day == day.isoformat(),
                                                    PatrolRun.person_id == person_id)).one()
            run.status, run.channel, run.sent_at = ("sent" if ok else "failed"), channel, \
                self.clock.now()
            tries = int(run.detail.split("次")[0]) if run.detail[:1].isdigit() else 0
            run.detail = "" if ok else ("没有通知方式" if not urls else
                                        f"{tries + len(results)}次尝试均失败")
        if not ok:
            log.warning("patrol list for %s on %s not delivered", person_id, day)
        return int(ok)

    def start(self) -> None:
        """Check every 30 s in a thread."""
        self._thread = threading.Thread(target=self._run, name="patrol", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """The loop; an error is logged, never fatal."""
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:
                log.exception("patrol list check failed")
            self._stop.wait(CHECK_EVERY_S)

    def stop(self) -> None:
        """Stop the loop; safe twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

