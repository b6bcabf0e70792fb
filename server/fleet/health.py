"""Heartbeat history per node: one small row per heartbeat, older rows dropped as new ones come."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from protocol.payloads import Health
from server.alerting.wording import BEIJING
from server.core.db import HealthSample

MAX_POINTS = 2000  # what one chart draws at most


def record(s: Session, node_id: str, h: Health, now: datetime, keep_days: float,
           purge: bool = True) -> None:
    """Store one heartbeat's figures and forget this node's samples older than keep_days
    (purge=False: the caller forgets them once for a whole batch)."""
    s.add(HealthSample(node_id=node_id, at=now, fps=h.fps, temperature_c=h.temperature_c,
                       cpu_percent=h.cpu_percent, throttled=h.throttled,
                       outbox_depth=h.outbox_depth))
    if purge:
        forget(s, {node_id}, now, keep_days)


def forget(s: Session, node_ids: set[str], now: datetime, keep_days: float) -> None:
    """Drop these nodes' samples older than keep_days, in one statement."""
    if node_ids:
        s.execute(delete(HealthSample).where(HealthSample.node_id.in_(sorted(node_ids)),
                                             HealthSample.at < now - timedelta(days=keep_days)))


def samples(s: Session, node_id: str, since: datetime) -> list[dict[str, Any]]:
    """A node's samples since a time, oldest first, thinned to at most MAX_POINTS."""
    rows = list(s.scalars(select(HealthSample).where(HealthSample.node_id == node_id,
                                                     HealthSample.at >= since)
                          .order_by(HealthSample.at)))
    step = max(1, -(-len(rows) // MAX_POINTS))
    return [{"at": r.at, "fps": r.fps, "temperature_c": r.temperature_c,
             "cpu_percent": r.cpu_percent, "throttled": r.throttled,
             "outbox_depth": r.outbox_depth} for r in rows[::step]]


def chart_svg(points: list[dict[str, Any]], series: tuple[tuple[str, str, str], ...],
              start: datetime, end: datetime, width: int = 640, height: int = 180) -> str:
    """A line chart (inline SVG) of some sample fields over [start, end]; labels are escaped
    by the caller's template, so only numbers and fixed names go in here."""
    left, right, top, bottom = 40, 10, 10, 22
    span = max((end - start).total_seconds(), 1.0)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} '
             f'{height}" width="{width}" height="{height}" role="img">',
             f'<rect x="{left}" y="{top}" width="{width - left - right}" '
             f'height="{height - top - bottom}" fill="#fff" stroke="#ccd"/>']
    for field, colour, css in series:
        values = [p[field] for p in points if p[field] is not None]
        if not values:
            continue
        lo, hi = min(values + [0.0]), max(values)
        hi = hi if hi > lo else lo + 1
        coords = []
        for p in points:
            if p[field] is None:
                continue
            x = left + (width - left - right) * (p["at"] - start).total_seconds() / span
            y = top + (height - top - bottom) * (1 - (p[field] - lo) / (hi - lo))
            coords.append(f"{x:.1f},{y:.1f}")
        parts.append(f'<polyline class="{css}" data-field="{field}" data-points="{len(coords)}" '
                     f'fill="none" stroke="{colour}" stroke-width="1.6" '
                     f'points="{" ".join(coords)}"/>')
        if len(coords) < 3:  # too few for a line to show: mark the points
            for c in coords:
                x, y = c.split(",")
                parts.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>')
        parts.append(f'<text x="2" y="{top + 10 + 12 * series.index((field, colour, css))}" '
                     f'font-size="10" fill="{colour}">{hi:.0f}</text>')
    for x, t, anchor in ((left, start, "start"), (width - right, end, "end")):
        parts.append(f'<text x="{x}" y="{height - 6}" font-size="10" fill="#6b7378" '
                     f'text-anchor="{anchor}">{t.astimezone(BEIJING):%m-%d %H:%M}</text>')
    parts.append("</svg>")
    return "".join(parts)
