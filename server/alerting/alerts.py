"""Events to alerts: folding, routing, the alert state machine and its timeline."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from protocol.payloads import CRITICAL_TYPES, Event, EventType
from server.core.db import (
    Alert,
    EquipmentState,
    EventRow,
    Grid,
    Node,
    Pond,
    Silence,
    TimelineEntry,
)
from server.core.errors import ServerError

log = logging.getLogger(__name__)

STATES = ("open", "notified", "acknowledged", "on_scene", "resolved")
OUTCOMES = ("real", "false_alarm", "test")
ACTIVE = ("open", "notified")  # escalation still running
NODE_OFFLINE = "node_offline"
TASK_TARGETS = {
    EventType.EQUIPMENT_MISSING.value: "constable",
    EventType.CAMERA_FAULT.value: "technicians",
    NODE_OFFLINE: "technicians",
}
class AlertError(ServerError, ValueError):
    """An action that does not fit the alert's state."""


def policy_of(session: Session, pond_id: str) -> str:
    """The escalation policy of the pond's grid ('default' when it has none)."""
    pond = session.get(Pond, pond_id)
    grid = session.get(Grid, pond.grid_id) if pond else None
    return grid.policy if grid else "default"


def timeline(session: Session, alert: Alert, now: datetime, kind: str, detail: str = "",
             **fields: str | None) -> None:
    """Add one timeline row to an alert."""
    session.add(TimelineEntry(alert_id=alert.id, at=now, kind=kind, detail=detail, **fields))


def silenced(session: Session, pond_id: str, node_id: str | None, now: datetime) -> Silence | None:
    """The silence covering this pond or node now, if any."""
    cond = [Silence.pond_id == pond_id]
    if node_id:
        cond.append(Silence.node_id == node_id)
    q = select(Silence).where(or_(*cond), Silence.starts <= now, Silence.ends > now).limit(1)
    return session.scalars(q).first()


def _open_alert(session: Session, pond_id: str, kind: str, subject: str) -> Alert | None:
    """The unresolved alert for this pond, kind and subject."""
    q = select(Alert).where(Alert.pond_id == pond_id, Alert.kind == kind,
                            Alert.subject == subject, Alert.state != "resolved")
    return session.scalars(q.order_by(Alert.id.desc()).limit(1)).first()


def raise_alert(session: Session, *, pond_id: str, node_id: str | None, kind: str, subject: str,
                severity: str, policy: str, now: datetime, event: EventRow | None) -> Alert:
    """Fold into the open alert of this pond/kind/subject or open a new one."""
    alert = _open_alert(session, pond_id, kind, subject)
    if alert is not None:
        alert.event_count += 1
        alert.last_event_at = now
        if event is not None:
            event.alert_id = alert.id
            if event.payload.get("snapshot") and alert.snapshot_event_id is None:
                alert.snapshot_event_id = event.id
            timeline(session, alert, now, "event", f"folded event {event.id}")
        return alert
    quiet = silenced(session, pond_id, node_id, now)
    urgent = kind not in TASK_TARGETS
    alert = Alert(pond_id=pond_id, node_id=node_id, kind=kind, subject=subject, severity=severity,
                  urgent=urgent, state="open", opened_at=now, last_event_at=now, event_count=1,
                  silenced=quiet is not None, policy=policy, step=0,
                  next_step_at=None if quiet else now,
                  first_event_id=event.id if event else None,
                  snapshot_event_id=event.id if event and event.payload.get("snapshot") else None)
    session.add(alert)
    session.flush()
    if event is not None:
        event.alert_id = alert.id
    note = f"silenced: {quiet.reason}" if quiet else ""
    timeline(session, alert, now, "state", note, state="open")
    log.info("alert %s opened: pond=%s kind=%s subject=%s silenced=%s", alert.id, pond_id, kind,
             subject, alert.silenced)
    return alert


def _set_equipment(session: Session, pond_id: str, item: str, state: str, when: datetime,
                   now: datetime) -> None:
    """Record what is known about one kit item at one pond."""
    row = session.get(EquipmentState, (pond_id, item))
    if row is None:
        session.add(EquipmentState(pond_id=pond_id, item=item, state=state, since=when,
                                   updated_at=now))
    elif row.state != state:
        row.state, row.since, row.updated_at = state, when, now
    else:
        row.updated_at = now


def apply_health_equipment(session: Session, pond_id: str, items: dict[str, str],
                           now: datetime) -> None:
    """Take present/missing/unknown per item from a heartbeat."""
    for item, state in items.items():
        st = state if state in ("present", "missing") else "unknown"
        _set_equipment(session, pond_id, item[:32], st, now, now)


def on_event(session: Session, row: EventRow, ev: Event, policy: str,
             now: datetime) -> Alert | None:
    """Route one freshly stored event; returns the alert it opened or joined."""
    etype = ev.type.value
    if ev.type in CRITICAL_TYPES:
        return raise_alert(session, pond_id=row.pond_id, node_id=row.node_id, kind=etype,
                           subject="", severity="critical", policy=policy, now=now, event=row)
    if ev.type is EventType.EQUIPMENT_MISSING:
        item = ev.item or "unknown"
        _set_equipment(session, row.pond_id, item, "missing", ev.ts, now)
        return raise_alert(session, pond_id=row.pond_id, node_id=row.node_id, kind=etype,
                           subject=item, severity="warning", policy=policy, now=now, event=row)
    if ev.type is EventType.CAMERA_FAULT:
        return raise_alert(session, pond_id=row.pond_id, node_id=row.node_id, kind=etype,
                           subject=row.node_id, severity="warning", policy=policy, now=now,
                           event=row)
    if ev.type is EventType.EQUIPMENT_RESTORED:
        item = ev.item or "unknown"
        _set_equipment(session, row.pond_id, item, "present", ev.ts, now)
        return auto_resolve(session, row.pond_id, EventType.EQUIPMENT_MISSING.value, item, row, now)
    if ev.type is EventType.CAMERA_OK:
        return auto_resolve(session, row.pond_id, EventType.CAMERA_FAULT.value, row.node_id, row,
                            now)
    if ev.type is EventType.EVENT_END and ev.ref:
        ended = session.get(EventRow, ev.ref)
        if ended is not None and ended.alert_id is not None:
            alert = session.get(Alert, ended.alert_id)
            if alert is not None:
                row.alert_id = alert.id
                timeline(session, alert, now, "event", f"event {ev.ref} ended: {ev.reason or ''}")
                return alert
    return None


def auto_resolve(session: Session, pond_id: str, kind: str, subject: str, row: EventRow | None,
                 now: datetime) -> Alert | None:
    """Resolve the open alert a clearing event answers (the node saw it fixed)."""
    alert = _open_alert(session, pond_id, kind, subject)
    if alert is None:
        return None
    if row is not None:
        row.alert_id = alert.id
    alert.state, alert.outcome, alert.resolved_at = "resolved", "real", now
    alert.next_step_at = None
    timeline(session, alert, now, "state", "cleared by the node", state="resolved")
    return alert


def node_status(session: Session, node: Node, state: str, policy: str,
                now: datetime) -> Alert | None:
    """Track online/offline; offline opens a technician task, online resolves it; returns
    the alert opened or resolved (None when the state did not change)."""
    if node.state == state:
        return None
    node.state, node.state_at = state, now
    if state == "offline":
        return raise_alert(session, pond_id=node.pond_id, node_id=node.id, kind=NODE_OFFLINE,
                           subject=node.id, severity="warning", policy=policy, now=now,
                           event=None)
    return auto_resolve(session, node.pond_id, NODE_OFFLINE, node.id, None, now)


def act(session: Session, alert: Alert, action: str, by: str, now: datetime,
        outcome: str | None = None) -> bool:
    """Apply ack / on_scene / resolve; False when it changes nothing; AlertError if invalid."""
    order = STATES.index(alert.state)
    if action == "ack":
        target = "acknowledged"
    elif action == "on_scene":
        target = "on_scene"
    elif action == "resolve":
        target = "resolved"
        if outcome not in OUTCOMES:
            raise AlertError(f"outcome must be one of {', '.join(OUTCOMES)}")
    else:
        raise AlertError(f"unknown action {action!r}")
    if alert.state == "resolved":
        return False
    if STATES.index(target) <= order:
        return False
    if alert.acked_at is None:
        alert.acked_at, alert.acked_by = now, by
    if target == "on_scene":
        alert.on_scene_at = now
    if target == "resolved":
        alert.resolved_at, alert.outcome = now, outcome
    alert.state, alert.next_step_at = target, None
    timeline(session, alert, now, "state", f"by {by}" + (f", {outcome}" if outcome else ""),
             state=target, person_id=by)
    log.info("alert %s -> %s by %s", alert.id, target, by)
    return True


def mark_notified(session: Session, alert: Alert, now: datetime) -> None:
    """The first page reached someone: open → notified."""
    if alert.state == "open":
        alert.state, alert.notified_at = "notified", now
        timeline(session, alert, now, "state", "", state="notified")
