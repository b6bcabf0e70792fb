"""The 1-3-5 report: time to acknowledge and to reach the pond, per alert, grid and county."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from markupsafe import escape
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access.scope import Scope, pond_filter
from server.core.db import Alert, Grid, Pond

# 1 minute to respond (acknowledge), 3 to reach the core area, 5 for the rest (on scene).
ACK_S, CORE_S, ALL_S = 60, 180, 300


@dataclass(frozen=True)
class AlertTiming:
    """One urgent alert's clocks."""

    alert_id: int
    grid_id: str
    grid: str
    pond: str
    kind: str
    opened_at: datetime
    ack_s: float | None
    on_scene_s: float | None
    outcome: str | None

    @property
    def within(self) -> tuple[bool, bool, bool]:
        """(acknowledged ≤ 1 min, on scene ≤ 3 min, on scene ≤ 5 min)."""
        return (self.ack_s is not None and self.ack_s <= ACK_S,
                self.on_scene_s is not None and self.on_scene_s <= CORE_S,
                self.on_scene_s is not None and self.on_scene_s <= ALL_S)


@dataclass
class Share:
    """Counts of one group of alerts."""

    name: str
    total: int = 0
    hits: list[int] = field(default_factory=lambda: [0, 0, 0])

    def add(self, t: AlertTiming) -> None:
        """Count one alert."""
        self.total += 1
        for i, ok in enumerate(t.within):
            self.hits[i] += int(ok)

    @property
    def pct(self) -> list[float]:
        """Shares within 1, 3 and 5 minutes, in percent."""
        return [100.0 * h / self.total if self.total else 0.0 for h in self.hits]


def timings(s: Session, start: datetime, end: datetime, include_tests: bool = False, *,
            scope: Scope) -> list[AlertTiming]:
    """Urgent, unsilenced alerts on ponds in scope opened in [start, end)."""
    q = (select(Alert, Pond, Grid).join(Pond, Pond.id == Alert.pond_id)
         .join(Grid, Grid.id == Pond.grid_id)
         .where(Alert.urgent, ~Alert.silenced, Alert.opened_at >= start, Alert.opened_at < end,
                pond_filter(scope, Alert.pond_id))
         .order_by(Alert.opened_at))
    out = []
    for a, p, g in s.execute(q):
        if a.outcome == "test" and not include_tests:
            continue
        ack = (a.acked_at - a.opened_at).total_seconds() if a.acked_at else None
        scene = (a.on_scene_at - a.opened_at).total_seconds() if a.on_scene_at else None
        out.append(AlertTiming(a.id, g.id, g.name, p.name, a.kind, a.opened_at, ack, scene,
                               a.outcome))
    return out


def shares(rows: list[AlertTiming], total_name: str = "全县") -> tuple[Share, list[Share]]:
    """The total share (the county, or a user's grids) and one per grid (sorted by name)."""
    county = Share(total_name)
    grids: dict[str, Share] = {}
    for t in rows:
        county.add(t)
        grids.setdefault(t.grid_id, Share(t.grid)).add(t)
    return county, sorted(grids.values(), key=lambda g: g.name)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """A text cell a spreadsheet will not run as a formula (prefixed with ')."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _row(cells: Iterable[object]) -> list[object]:
    """Every cell of a CSV row through safe_cell."""
    return [safe_cell(c) for c in cells]


def to_csv(rows: list[AlertTiming]) -> str:
    """Per-alert CSV (UTF-8 with BOM so spreadsheet programs read the Chinese)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["alert_id", "grid", "pond", "kind", "opened_at", "ack_s", "on_scene_s",
                "ack_within_1min", "on_scene_within_3min", "on_scene_within_5min", "outcome"])
    for t in rows:
        w.writerow(_row([t.alert_id, t.grid, t.pond, t.kind, t.opened_at.isoformat(),
                         "" if t.ack_s is None else f"{t.ack_s:.0f}",
                         "" if t.on_scene_s is None else f"{t.on_scene_s:.0f}",
                         *(int(x) for x in t.within), t.outcome or ""]))
    return "\ufeff" + buf.getvalue()


def summary_csv(county: Share, grids: list[Share]) -> str:
    """Per-grid and county shares as CSV."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["group", "alerts", "pct_ack_1min", "pct_on_scene_3min", "pct_on_scene_5min"])
    for g in [*grids, county]:
        w.writerow(_row([g.name, g.total, *(f"{p:.1f}" for p in g.pct)]))
    return "\ufeff" + buf.getvalue()


def chart_svg(groups: list[Share],
              labels: tuple[str, str, str] = ("1分钟确认", "3分钟到场", "5分钟到场")) -> str:
    """A grouped horizontal bar chart of the three shares, as inline SVG (names escaped)."""
    colours = ("#b00020", "#a65e00", "#2e7d32")
    row_h, width, left = 54, 640, 130
    height = 30 + row_h * max(1, len(groups))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="chart" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="1-3-5 分钟达标率">']
    for i, label in enumerate(escape(x) for x in labels):
        parts.append(f'<rect x="{left + i * 150}" y="4" width="12" height="12" '
                     f'fill="{colours[i]}"/><text x="{left + i * 150 + 16}" y="15" '
                     f'font-size="12">{label}</text>')
    for r, g in enumerate(groups):
        y, name = 28 + r * row_h, escape(g.name)
        parts.append(f'<text x="0" y="{y + 24}" font-size="13">{name}（{g.total}）</text>')
        for i, pct in enumerate(g.pct):
            w = (width - left - 60) * pct / 100
            parts.append(f'<rect class="bar" data-group="{name}" data-pct="{pct:.1f}" '
                         f'x="{left}" y="{y + i * 15}" width="{w:.1f}" height="13" '
                         f'fill="{colours[i]}"/><text x="{left + w + 4}" y="{y + i * 15 + 11}" '
                         f'font-size="11">{pct:.0f}%</text>')
    parts.append("</svg>")
    return "".join(parts)
