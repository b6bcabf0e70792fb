"""Plain data for templates and JSON: alerts with timeline and events, ponds, silences in scope."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from server.access.scope import Scope, node_filter, pond_filter
from server.alerting.wording import (
    ITEM_ZH,
    KIND_ZH,
    STATE_ZH,
    alert_what,
    beijing_time,
    headline,
    map_link,
)
from server.core.db import (
    Alert,
    EquipmentState,
    EventRow,
    Node,
    Person,
    Pond,
    Silence,
    TimelineEntry,
)


def alert_dict(alert: Alert, pond: Pond | None) -> dict[str, Any]:
    """An alert as JSON-ready data."""
    def iso(t: datetime | None) -> str | None:
        """ISO 8601 or None."""
        return t.isoformat() if t else None
    return {
        "id": alert.id, "pond_id": alert.pond_id, "pond": pond.name if pond else alert.pond_id,
        "village": pond.village if pond else "", "node_id": alert.node_id, "kind": alert.kind,
        "subject": alert.subject, "what": alert_what(alert), "severity": alert.severity,
        "urgent": alert.urgent, "state": alert.state, "state_zh": STATE_ZH[alert.state],
        "outcome": alert.outcome, "silenced": alert.silenced, "event_count": alert.event_count,
        "opened_at": iso(alert.opened_at), "notified_at": iso(alert.notified_at),
        "acked_at": iso(alert.acked_at), "on_scene_at": iso(alert.on_scene_at),
        "resolved_at": iso(alert.resolved_at), "acked_by": alert.acked_by, "step": alert.step,
        "next_step_at": iso(alert.next_step_at),
        "has_snapshot": alert.snapshot_event_id is not None,
        "map_url": map_link(pond.lat, pond.lon, pond.name) if pond else None,
        "opened_local": beijing_time(alert.opened_at),
        # the page's first words: who and where (儿童已落水), and what the camera saw
        "headline": headline(alert) if alert.urgent else alert_what(alert),
        "child": alert.child, "people_seen": alert.people_seen,
        "upgraded_from": alert.upgraded_from, "upgraded_at": iso(alert.upgraded_at),
    }


def timeline_dicts(s: Session, alert_id: int) -> list[dict[str, Any]]:
    """Every timeline row of an alert, oldest first."""
    names = {p.id: p.name for p in s.scalars(select(Person))}
    rows = s.scalars(select(TimelineEntry).where(TimelineEntry.alert_id == alert_id)
                     .order_by(TimelineEntry.at, TimelineEntry.id))
    return [{"at": r.at.isoformat(), "at_local": beijing_time(r.at), "kind": r.kind,
             "state": r.state,
             "person_id": r.person_id, "person": names.get(r.person_id or "", r.person_id),
             "channel": r.channel, "result": r.result, "detail": r.detail} for r in rows]


def event_dicts(s: Session, alert_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """The events folded into an alert, oldest first, with what the node measured."""
    rows = s.scalars(select(EventRow).where(EventRow.alert_id == alert_id)
                     .order_by(EventRow.ts, EventRow.id).limit(limit))
    keep = ("track_id", "zone", "stature_m", "possible_child", "supervised", "item", "reason",
            "ref", "snapshot")
    return [{"id": e.id, "type": e.type, "node_id": e.node_id, "ts": e.ts.isoformat(),
             "ts_local": beijing_time(e.ts),
             **{k: e.payload.get(k) for k in keep if k in e.payload}}
            for e in rows]


def list_alerts(s: Session, state: str | None = None, limit: int = 200, *,
                scope: Scope) -> list[dict[str, Any]]:
    """Newest alerts in scope first, optionally one state or 'active' (not resolved)."""
    q = (select(Alert, Pond).join(Pond, Pond.id == Alert.pond_id, isouter=True)
         .where(pond_filter(scope, Alert.pond_id)))
    if state == "active":
        q = q.where(Alert.state != "resolved")
    elif state:
        q = q.where(Alert.state == state)
    q = q.order_by(Alert.id.desc()).limit(limit)
    return [alert_dict(a, p) for a, p in s.execute(q)]


def pond_rows(s: Session, scope: Scope) -> list[dict[str, Any]]:
    """Per pond in scope: nodes with their state and each kit item present/missing/unknown."""
    out: list[dict[str, Any]] = []
    equipment: dict[str, list[EquipmentState]] = {}
    for e in s.scalars(select(EquipmentState).where(pond_filter(scope, EquipmentState.pond_id))
                       .order_by(EquipmentState.item)):
        equipment.setdefault(e.pond_id, []).append(e)
    nodes: dict[str, list[Node]] = {}
    for n in s.scalars(select(Node).where(pond_filter(scope, Node.pond_id)).order_by(Node.id)):
        nodes.setdefault(n.pond_id, []).append(n)
    blind: dict[str, list[str]] = {}
    for a in s.scalars(select(Alert).where(Alert.state != "resolved",
                                           Alert.kind.in_(("camera_fault", "node_offline")),
                                           pond_filter(scope, Alert.pond_id))):
        blind.setdefault(a.pond_id, []).append(KIND_ZH.get(a.kind, a.kind))
    for p in s.scalars(select(Pond).where(pond_filter(scope, Pond.id)).order_by(Pond.id)):
        out.append({
            "watched": p.id not in blind and bool(nodes.get(p.id)),
            "faults": blind.get(p.id, []),
            "id": p.id, "name": p.name, "village": p.village, "grid": p.grid_id,
            "nodes": [{"id": n.id, "state": n.state, "since": beijing_time(n.state_at),
                       "camera": (n.health or {}).get("camera"),
                       "fps": (n.health or {}).get("fps"),
                       "temperature_c": (n.health or {}).get("temperature_c"),
                       "outbox_depth": (n.health or {}).get("outbox_depth"),
                       "health_at": beijing_time(n.health_at)} for n in nodes.get(p.id, [])],
            "equipment": [{"item": e.item, "item_zh": ITEM_ZH.get(e.item, e.item),
                           "state": e.state, "since": beijing_time(e.since),
                           "since_iso": e.since.isoformat() if e.since else None}
                          for e in equipment.get(p.id, [])],
        })
    return out


def silences_in_scope(s: Session, scope: Scope, now: datetime) -> list[Silence]:
    """Current and future silences on ponds or nodes in scope."""
    return list(s.scalars(select(Silence).where(
        Silence.ends > now, or_(pond_filter(scope, Silence.pond_id),
                                node_filter(scope, Silence.node_id)))
        .order_by(Silence.starts)))
