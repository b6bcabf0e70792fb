"""Events to alerts: folding, routing, the alert state machine and its timeline."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

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
FALSE_ALARMS = "false_alarms"  # a node over its false-alarm budget: a technician checks it
ON_SCENE_TIMEOUT_S = 300.0
# An unresolved incident takes in a pond's critical events until nothing was heard of it for
# this long (escalation.incident_clear_s; a node re-announces a child who stays every 120 s
# and ends a visit after its clear_s, so a visit that goes on keeps its incident; one ten
# minutes later is a new visit).
INCIDENT_CLEAR_S = 600.0  # the "5" of 1-3-5: acknowledged but not on scene after this
# How serious each critical kind is; all critical events of one pond fold into one incident
# whose kind is the most serious seen. An SOS ranks above a child on the bank: a person at
# the pond pressed it, so someone may already be in trouble the camera cannot see, while
# a child on the bank is a danger not yet realised. Anyone in the water ranks above both,
# and someone gone under is the worst.
SERIOUSNESS = {EventType.CHILD_NEAR_WATER.value: 1, EventType.SOS.value: 2,
               EventType.PERSON_IN_WATER.value: 3, EventType.PERSON_SUBMERGED.value: 4}
TASK_TARGETS = {
    EventType.EQUIPMENT_MISSING.value: "constable",
    EventType.CAMERA_FAULT.value: "technicians",
    NODE_OFFLINE: "technicians",
    FALSE_ALARMS: "technicians",
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


def open_incident(session: Session, pond_id: str, now: datetime,
                  clear_s: float = INCIDENT_CLEAR_S) -> Alert | None:
    """The pond's incident events fold into: its unresolved critical alert, unless nothing
    was heard of it (no event, no end of one) for clear_s: then a new visit is a new one."""
    q = select(Alert).where(Alert.pond_id == pond_id, Alert.kind.in_(list(SERIOUSNESS)),
                            Alert.state != "resolved",
                            Alert.last_event_at >= now - timedelta(seconds=clear_s))
    return session.scalars(q.order_by(Alert.id.desc()).limit(1)).first()


def covers(session: Session, alert: Alert, event: EventRow | None, now: datetime,
           clear_s: float = INCIDENT_CLEAR_S) -> bool:
    """Whether an incident someone acknowledged (已收到) or reached (已到场) still takes in this
    critical event: for clear_s after that action anything does; later only a re-announcement
    of a child already in it. A child who came since is a new alert, so an old acknowledgement
    never swallows him while the pond has not gone quiet (a child who stays for hours)."""
    if alert.state not in ("acknowledged", "on_scene") or alert.acted_at is None:
        return True
    if now - alert.acted_at <= timedelta(seconds=clear_s):
        return True
    repeat_of = event.payload.get("repeat_of") if event is not None else None
    first = session.get(EventRow, repeat_of) if isinstance(repeat_of, str) else None
    return first is not None and first.alert_id == alert.id


def _learn(alert: Alert, event: EventRow | None) -> None:
    """Take who is involved from an event: a child or an adult, how many people were seen."""
    if event is None:
        return
    p = event.payload
    child = p.get("child")
    if event.type == EventType.CHILD_NEAR_WATER.value and child is None:
        child = None if p.get("possible_child") else True
    if child is True:
        alert.child = True
    elif child is False and alert.child is None:
        alert.child = False
    boxes = p.get("boxes")
    if isinstance(boxes, list) and boxes:
        alert.people_seen = max(alert.people_seen or 0, len(boxes))


def upgrade(session: Session, alert: Alert, kind: str, now: datetime) -> None:
    """The incident got worse: take the new kind, page again at once and restart escalation
    from the step it had reached (an acknowledgement of the milder kind no longer holds;
    someone already on scene is paged once, without escalation)."""
    before = alert.kind
    alert.kind, alert.upgraded_from, alert.upgraded_at = kind, before, now
    timeline(session, alert, now, "upgrade", f"{before} -> {kind}")
    log.warning("alert %s got worse: %s -> %s", alert.id, before, kind)
    if alert.state == "acknowledged":
        alert.state = "notified"
        timeline(session, alert, now, "state", f"worse ({kind}): to be acknowledged again",
                 state="notified")
    alert.step = max(alert.step - 1, 0)  # the step reached fires again now
    alert.steps_from = None              # the escalator re-bases the step timings on it
    if not alert.silenced:
        alert.next_step_at = now


def raise_alert(session: Session, *, pond_id: str, node_id: str | None, kind: str, subject: str,
                severity: str, policy: str, now: datetime, event: EventRow | None,
                incident_clear_s: float = INCIDENT_CLEAR_S) -> Alert:
    """Fold into the open alert (for critical kinds: the pond's incident, whatever its kind;
    otherwise this pond/kind/subject) or open a new one."""
    critical = kind in SERIOUSNESS
    alert = open_incident(session, pond_id, now, incident_clear_s) if critical else _open_alert(
        session, pond_id, kind, subject)
    if critical and alert is not None and not covers(session, alert, event, now,
                                                     incident_clear_s):
        log.info("alert %s was %s at %s: a new person's event opens a new alert", alert.id,
                 alert.state, alert.acted_at)
        alert = None
    if alert is not None:
        alert.event_count += 1
        alert.last_event_at = now
        if event is not None:
            event.alert_id = alert.id
            if event.payload.get("snapshot") and alert.snapshot_event_id is None:
                alert.snapshot_event_id = event.id
            timeline(session, alert, now, "event", f"folded event {event.id} ({kind})")
        if critical:
            _learn(alert, event)
            if alert.silenced and silenced(session, pond_id, node_id, now) is None:
                alert.silenced = False  # opened in a maintenance window that is over now
                timeline(session, alert, now, "note", "silence over: paging")
                if alert.state in ACTIVE:
                    alert.next_step_at = now
            if SERIOUSNESS[kind] > SERIOUSNESS.get(alert.kind, 0):
                upgrade(session, alert, kind, now)
        return alert
    quiet = silenced(session, pond_id, node_id, now)
    urgent = kind not in TASK_TARGETS
    alert = Alert(pond_id=pond_id, node_id=node_id, kind=kind, subject=subject, severity=severity,
                  urgent=urgent, state="open", opened_at=now, last_event_at=now, event_count=1,
                  silenced=quiet is not None, policy=policy, step=0,
                  next_step_at=None if quiet else now,
                  first_event_id=event.id if event else None,
                  snapshot_event_id=event.id if event and event.payload.get("snapshot") else None,
                  steps_from=now, people_seen=None, child=None)
    if critical:
        _learn(alert, event)
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
             now: datetime, incident_clear_s: float = INCIDENT_CLEAR_S) -> Alert | None:
    """Route one freshly stored event; returns the alert it opened or joined."""
    etype = ev.type.value
    if ev.type in CRITICAL_TYPES:
        return raise_alert(session, pond_id=row.pond_id, node_id=row.node_id, kind=etype,
                           subject="", severity="critical", policy=policy, now=now, event=row,
                           incident_clear_s=incident_clear_s)
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
                if alert.state != "resolved":
                    alert.last_event_at = now  # the visit was still going on until now
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
        outcome: str | None = None, on_scene_timeout_s: float = ON_SCENE_TIMEOUT_S,
        false_alarm_budget: float | None = None) -> bool:
    """Apply ack / on_scene / resolve; False when it changes nothing; AlertError if invalid.

    An urgent alert acknowledged is checked again after on_scene_timeout_s: nobody on scene
    by then re-pages the constable and the next step (the escalator does it). Resolved as a
    false alarm, its node is checked against false_alarm_budget (per 7 days) when given."""
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
    alert.state, alert.next_step_at, alert.acted_at = target, None, now
    if target == "acknowledged" and alert.urgent and not alert.silenced:
        alert.next_step_at = now + timedelta(seconds=on_scene_timeout_s)
    timeline(session, alert, now, "state", f"by {by}" + (f", {outcome}" if outcome else ""),
             state=target, person_id=by)
    log.info("alert %s -> %s by %s", alert.id, target, by)
    if outcome == "false_alarm" and false_alarm_budget is not None and alert.node_id:
        over_false_budget(session, alert.node_id, alert.pond_id, false_alarm_budget, now)
    return True


def over_false_budget(session: Session, node_id: str, pond_id: str, budget: float,
                      now: datetime) -> Alert | None:
    """More false alarms from this node in the last 7 days than the weekly budget: open (once,
    while unresolved) a task for the technicians to check zones, model and camera."""
    week = now - timedelta(days=7)
    falses = session.scalars(select(Alert.id).where(
        Alert.node_id == node_id, Alert.outcome == "false_alarm", Alert.urgent,
        Alert.resolved_at >= week)).all()
    if len(falses) <= budget:
        return None
    task = raise_alert(session, pond_id=pond_id, node_id=node_id, kind=FALSE_ALARMS,
                       subject=node_id, severity="warning", policy=policy_of(session, pond_id),
                       now=now, event=None)
    timeline(session, task, now, "note",
             f"{len(falses)} false alarms in 7 days (budget {budget:g})")
    return task


def page_outdated(alert: Alert, created_at: datetime) -> str | None:
    """Why a page queued at created_at should no longer go out (None: send it): the alert
    was resolved, or someone acted on it since (a page queued after an action, such as the
    on-scene reminder, still goes)."""
    if alert.state == "resolved":
        return "alert already resolved"
    if alert.urgent and alert.state not in ACTIVE and (
            alert.acted_at is None or alert.acted_at > created_at):
        return f"alert already {alert.state}"
    return None


def mark_notified(session: Session, alert: Alert, now: datetime) -> None:
    """The first page reached someone: open → notified."""
    if alert.state == "open":
        alert.state, alert.notified_at = "notified", now
        timeline(session, alert, now, "state", "", state="notified")
