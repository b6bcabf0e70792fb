"""Escalation: due steps claimed from the database on an injectable clock, then paged."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from server.alerting import alerts
from server.alerting.paging import Pager
from server.alerting.wording import quiet_until
from server.core.clock import Clock
from server.core.config import EscalationPolicy, ServerConfig
from server.core.db import Alert, Delivery, Grid, Person, Pond, RosterEntry, Station
from server.core.metrics import Metrics

log = logging.getLogger(__name__)
SWEEP_EVERY_S = 2.0


def on_duty(s: Session, grid: Grid, role: str, now: datetime) -> str | None:
    """The roster's person for role (primary/backup) now, else the grid's default."""
    q = select(RosterEntry.person_id).where(RosterEntry.grid_id == grid.id,
                                            RosterEntry.role == role, RosterEntry.starts <= now,
                                            RosterEntry.ends > now).order_by(RosterEntry.starts)
    found = s.scalars(q.limit(1)).first()
    if found:
        return found
    return grid.constable_id if role == "primary" else grid.backup_id


def technicians(s: Session, station_id: str | None) -> list[str]:
    """The technicians attached to the station, else every technician."""
    techs = list(s.scalars(select(Person).where(Person.role == "technician")
                           .order_by(Person.id)))
    own = [p.id for p in techs if station_id and station_id in (p.stations or [])]
    return own or [p.id for p in techs]


def recipients(s: Session, pond_id: str, targets: Sequence[str], now: datetime) -> list[str]:
    """Person ids for escalation targets at one pond, in order, without repeats."""
    pond = s.get(Pond, pond_id)
    grid = s.get(Grid, pond.grid_id) if pond else None
    station = s.get(Station, grid.station_id) if grid else None
    out: list[str] = []
    for t in targets:
        ids: list[str | None] = []
        if t == "constable" and grid:
            ids = [on_duty(s, grid, "primary", now)]
        elif t == "backup" and grid:
            backup = on_duty(s, grid, "backup", now)
            if backup == on_duty(s, grid, "primary", now):  # rostered swap: the usual
                backup = grid.constable_id                    # constable stands in as backup
            ids = [backup]
        elif t == "area_officers" and station:
            ids = list(station.area_officers)
        elif t == "duty_desk" and station:
            ids = list(station.duty_desk)
        elif t == "technicians":
            ids = [*technicians(s, station.id if station else None)]
        out.extend(i for i in ids if i and i not in out)
    return out


class Escalator:
    """Fires due escalation steps; all state is in the alerts table."""

    def __init__(self, cfg: ServerConfig, sessions: sessionmaker[Session], clock: Clock,
                 metrics: Metrics, pager: Pager) -> None:
        """Wire to the pager; start() runs the loop thread."""
        self.cfg, self.sessions, self.clock, self.metrics, self.pager = (
            cfg, sessions, clock, metrics, pager)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pg = sessions.kw["bind"].dialect.name == "postgresql"
        pager.on_person_failed = self.person_failed

    def policy(self, name: str) -> EscalationPolicy:
        """A named policy, or the default."""
        return self.cfg.escalation.policy(name)

    def wake(self) -> None:
        """Look for due steps now (a new alert, a failed person)."""
        self._wake.set()

    def start(self) -> None:
        """Resume pending deliveries and start the loop."""
        n = self.pager.resume()
        if n:
            log.info("resumed %d pending deliveries", n)
        self._thread = threading.Thread(target=self._run, name="escalator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        """Tick when woken, at least every half second; sweep for orphaned pages every 2 s."""
        next_sweep = time.monotonic() + SWEEP_EVERY_S
        while not self._stop.is_set():
            try:
                self.tick()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + SWEEP_EVERY_S
                    self.pager.sweep()
            except Exception:
                log.exception("escalation tick failed")
            self._wake.wait(0.5)
            self._wake.clear()

    def tick(self) -> int:
        """Claim every due step, commit, then hand the pages to the pager; returns steps fired."""
        now = self.clock.now()
        fired, deliveries = 0, []
        with self.sessions() as s, s.begin():
            q = (select(Alert).where(Alert.next_step_at.is_not(None), Alert.next_step_at <= now,
                                     Alert.state != "resolved")
                 .order_by(Alert.next_step_at).limit(200))
            if self._pg:
                q = q.with_for_update(skip_locked=True)
            for alert in s.scalars(q).all():
                if not self._claim(s, alert):
                    continue  # a concurrent tick (another thread or replica) fired it
                deliveries.extend(self._fire(s, alert, now))
                fired += 1
            s.flush()
            ids = [d.id for d in deliveries]
        if fired:
            self.metrics.escalations.inc(fired)
        self.pager.submit(ids)
        return fired

    @staticmethod
    def _claim(s: Session, alert: Alert) -> bool:
        """Take the due step with a conditional update, so two ticks never fire it twice
        (SQLite has no SKIP LOCKED; its SELECT runs outside the write transaction)."""
        res = s.execute(update(Alert).where(
            Alert.id == alert.id, Alert.step == alert.step,
            Alert.next_step_at == alert.next_step_at, Alert.state == alert.state)
            .values(step=alert.step).execution_options(synchronize_session=False))
        return getattr(res, "rowcount", 0) == 1

    def _fire(self, s: Session, alert: Alert, now: datetime) -> list[Delivery]:
        """Page the targets of the alert's current step and schedule the next one.

        Open or notified: the step's targets, the next step on time (counted from
        `steps_from`, which an upgrade re-bases on the step it had reached). Acknowledged
        with nobody on scene in time: the constable again and the next step's targets.
        On scene when it got worse: the step reached, once."""
        step = alert.step
        targets: list[str]
        nxt: datetime | None
        reason = "step"
        extra: list[str] = []
        if alert.urgent:
            pol = self.policy(alert.policy)
            k = min(step, len(pol.steps) - 1)
            if alert.steps_from is None:  # upgraded: the step it had reached fires now
                alert.steps_from = now - timedelta(seconds=pol.steps[k].after_s)
                reason = "upgrade"
            base = alert.steps_from
            targets = list(pol.steps[k].targets)
            if reason == "upgrade":  # everyone paged so far hears that it got worse
                targets = list(dict.fromkeys(t for st in pol.steps[:k + 1] for t in st.targets))
            if alert.state == "acknowledged":
                reason = "on_scene_overdue"
                targets = ["constable", *targets]
                extra = [alert.acked_by] if alert.acked_by else []
                nxt = now + timedelta(seconds=pol.on_scene_timeout_s)
            elif alert.state == "on_scene":
                nxt = None
            elif step + 1 < len(pol.steps):
                nxt = base + timedelta(seconds=pol.steps[step + 1].after_s)
            else:
                nxt = now + timedelta(seconds=pol.repeat_s)
        else:
            held = quiet_until(self.cfg.paging.quiet_hours, now)
            if held is not None:  # a task can wait for the morning; nobody is woken for it
                alert.next_step_at = held
                alerts.timeline(s, alert, now, "note", f"quiet hours until {held.isoformat()}")
                return []
            targets = [alerts.TASK_TARGETS.get(alert.kind, "technicians")]
            rep = self.cfg.task_repeat_s
            nxt = now + timedelta(seconds=rep) if rep else None
        people = recipients(s, alert.pond_id, targets, now)
        people += [p for p in extra if p not in people and s.get(Person, p) is not None]
        alert.step, alert.next_step_at = step + 1, nxt
        alerts.timeline(s, alert, now, "note",
                        f"step {step}{'' if reason == 'step' else f' ({reason})'}: "
                        f"{','.join(targets)} -> "
                        f"{','.join(people) or 'nobody'}")
        if (not people and alert.urgent and alert.state in alerts.ACTIVE and nxt is not None
                and step + 1 < len(self.policy(alert.policy).steps)):
            alert.next_step_at = now  # nobody to page here: go on at once
        rows = [Delivery(alert_id=alert.id, step=step, person_id=p, status="pending",
                         created_at=now, reason=reason) for p in people]
        s.add_all(rows)
        log.info("alert %s step %d (%s) -> %s", alert.id, step, reason, people)
        return rows

    def person_failed(self, alert_id: int) -> None:
        """Someone had no working channel: bring the next step forward to now."""
        now = self.clock.now()
        with self.sessions() as s, s.begin():
            alert = s.get(Alert, alert_id)
            if alert is None or not alert.urgent or alert.state not in alerts.ACTIVE:
                return
            if alert.step < len(self.policy(alert.policy).steps) and (
                    alert.next_step_at is None or alert.next_step_at > now):
                alert.next_step_at = now
                alerts.timeline(s, alert, now, "note", "unreachable: next step now")
        self.wake()
