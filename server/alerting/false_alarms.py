"""False alarms measured: per node and week, critical alerts and those marked 误报 per node-day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access.scope import Scope, pond_filter
from server.alerting.weekly import week_of
from server.alerting.wording import BEIJING
from server.core.db import Alert, Node, Pond, event_snapshot


@dataclass(frozen=True)
class NodeWeek:
    """One node's critical alerts in one week (Monday, Beijing) and how many were false."""

    node_id: str
    pond_id: str
    pond: str
    week: date
    days: float     # node-days of this week inside the period
    critical: int
    false: int
    budget: float   # false alarms per node-week allowed

    @property
    def rate(self) -> float:
        """False alarms per node-day."""
        return self.false / self.days if self.days else 0.0

    @property
    def over_budget(self) -> bool:
        """More false alarms than the budget allows for the days counted: a technician
        should look at this node (zones, model, camera angle)."""
        return self.false > 0 and self.rate * 7 > self.budget


def _days_in(week: date, start: datetime, end: datetime) -> float:
    """Days of the Beijing week starting `week` that fall inside [start, end)."""
    a = datetime.combine(week, time(0, 0), BEIJING)
    b = a + timedelta(days=7)
    overlap = (min(b, end) - max(a, start)).total_seconds()
    return max(overlap, 0.0) / 86400


def node_weeks(s: Session, start: datetime, end: datetime, *, scope: Scope,
               budget: float) -> list[NodeWeek]:
    """Every node in scope with critical alerts in [start, end), per week; over budget and
    highest rate first (test alerts left out)."""
    q = (select(Alert.node_id, Alert.pond_id, Alert.opened_at, Alert.outcome, Pond.name)
         .join(Pond, Pond.id == Alert.pond_id)
         .where(Alert.urgent, Alert.node_id.is_not(None), Alert.opened_at >= start,
                Alert.opened_at < end, pond_filter(scope, Alert.pond_id)))
    counts: dict[tuple[str, date], list[int]] = {}
    ponds: dict[str, tuple[str, str]] = {}
    for node_id, pond_id, opened, outcome, pond in s.execute(q):
        if outcome == "test" or node_id is None:
            continue
        c = counts.setdefault((node_id, week_of(opened)), [0, 0])
        c[0] += 1
        c[1] += outcome == "false_alarm"
        ponds[node_id] = (pond_id, pond)
    rows = [NodeWeek(n, ponds[n][0], ponds[n][1], wk, round(_days_in(wk, start, end), 3),
                     c[0], c[1], budget) for (n, wk), c in counts.items()]
    return sorted(rows, key=lambda r: (not r.over_budget, -r.rate, r.node_id, r.week))


def false_alarms(s: Session, node_id: str, start: datetime, end: datetime, *,
                 scope: Scope) -> list[dict[str, object]]:
    """The alerts of one node in scope marked 误报 in [start, end), newest first, each with
    whether its snapshot is still kept (retention deletes them)."""
    node = s.get(Node, node_id)
    if node is None:
        return []
    q = (select(Alert).where(Alert.node_id == node_id, Alert.outcome == "false_alarm",
                             Alert.opened_at >= start, Alert.opened_at < end,
                             pond_filter(scope, Alert.pond_id))
         .order_by(Alert.opened_at.desc()))
    return [{"alert": a, "snapshot": a.snapshot_event_id is not None
             and event_snapshot(s, a.snapshot_event_id) is not None} for a in s.scalars(q)]
