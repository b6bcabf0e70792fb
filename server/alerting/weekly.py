"""Report figures beside the 1-3-5 shares: alerts per pond per week, and the kit missing now."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access.scope import Scope, pond_filter
from server.alerting.report import safe_cell
from server.alerting.wording import BEIJING
from server.core.db import Alert, EquipmentState, Grid, Pond


@dataclass(frozen=True)
class PondWeeks:
    """One pond's urgent alerts, counted per week."""

    pond_id: str
    pond: str
    grid: str
    counts: tuple[int, ...]

    @property
    def total(self) -> int:
        """Alerts over the whole period."""
        return sum(self.counts)


def week_of(t: datetime) -> date:
    """The Monday (Beijing calendar) of the week t falls in."""
    d = t.astimezone(BEIJING).date()
    return d - timedelta(days=d.weekday())


def weekly(s: Session, start: datetime, end: datetime, *,
           scope: Scope) -> tuple[list[date], list[PondWeeks]]:
    """Weeks of [start, end) and, per pond in scope with alerts, its urgent alerts per week
    (test alerts left out, as in the 1-3-5 report); busiest ponds first."""
    weeks: list[date] = []
    w = week_of(start)
    while w <= week_of(end - timedelta(microseconds=1)):
        weeks.append(w)
        w += timedelta(days=7)
    index = {wk: i for i, wk in enumerate(weeks)}
    q = (select(Alert.pond_id, Alert.opened_at, Alert.outcome, Pond.name, Grid.name)
         .join(Pond, Pond.id == Alert.pond_id).join(Grid, Grid.id == Pond.grid_id)
         .where(Alert.urgent, Alert.opened_at >= start, Alert.opened_at < end,
                pond_filter(scope, Alert.pond_id)))
    counts: dict[str, list[int]] = {}
    names: dict[str, tuple[str, str]] = {}
    for pond_id, opened, outcome, pond, grid in s.execute(q):
        if outcome == "test":
            continue
        counts.setdefault(pond_id, [0] * len(weeks))[index[week_of(opened)]] += 1
        names[pond_id] = (pond, grid)
    rows = [PondWeeks(p, names[p][0], names[p][1], tuple(c)) for p, c in counts.items()]
    return weeks, sorted(rows, key=lambda r: (-r.total, r.pond))


def missing_kit(s: Session, *, scope: Scope) -> list[dict[str, object]]:
    """Kit items the nodes see missing now, on ponds in scope, longest missing first."""
    q = (select(EquipmentState, Pond, Grid).join(Pond, Pond.id == EquipmentState.pond_id)
         .join(Grid, Grid.id == Pond.grid_id)
         .where(EquipmentState.state == "missing", pond_filter(scope, EquipmentState.pond_id))
         .order_by(EquipmentState.since))
    return [{"pond_id": p.id, "pond": p.name, "village": p.village, "grid": g.name,
             "item": e.item, "since": e.since} for e, p, g in s.execute(q)]


def weekly_csv(weeks: list[date], rows: list[PondWeeks]) -> str:
    """Alerts per pond per week as CSV (UTF-8 with BOM; text cells cannot run as formulas)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["pond_id", "pond", "grid", *(wk.isoformat() for wk in weeks), "total"])
    for r in rows:
        w.writerow([safe_cell(v) for v in (r.pond_id, r.pond, r.grid)] + [*r.counts, r.total])
    return "\ufeff" + buf.getvalue()
