"""Pond pages: watch state, kit and last event, snapshot on request, the map, and silences."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from protocol.topics import REQUESTED_PREFIX
from server.access.scope import Scope, pond_filter
from server.alerting.wording import beijing_time
from server.api.actions import add_silence, send_command
from server.api.deps import CurrentScope, Db, PageScope, Svc, pond_in_scope, require
from server.api.pages import render
from server.api.queries import pond_rows, silences_in_scope
from server.core.db import Alert, EventRow, Node, Pond, Snapshot

router = APIRouter()
TILE = 256
MAP_W, MAP_H, PAD = 800, 560, 60
MAX_TILES = 64


def last_events(s: Session, scope: Scope) -> dict[str, dict[str, Any]]:
    """The newest event of every pond in scope."""
    newest = (select(EventRow.pond_id, func.max(EventRow.ts).label("ts"))
              .where(pond_filter(scope, EventRow.pond_id)).group_by(EventRow.pond_id).subquery())
    q = select(EventRow).join(newest, and_(EventRow.pond_id == newest.c.pond_id,
                                           EventRow.ts == newest.c.ts))
    return {e.pond_id: {"type": e.type, "at": beijing_time(e.ts), "alert_id": e.alert_id}
            for e in s.scalars(q)}


def requested_snapshots(s: Session, scope: Scope) -> dict[str, dict[str, Any]]:
    """Per pond in scope, the newest snapshot a node took on request (ids 'snap-…')."""
    q = (select(Snapshot.event_id, Snapshot.node_id, Snapshot.received_at, Node.pond_id)
         .join(Node, Node.id == Snapshot.node_id)
         .where(Snapshot.event_id.startswith(REQUESTED_PREFIX), pond_filter(scope, Node.pond_id))
         .order_by(Snapshot.received_at.desc()).limit(500))
    out: dict[str, dict[str, Any]] = {}
    for event_id, node_id, at, pond_id in s.execute(q):
        out.setdefault(pond_id, {"url": f"/snapshots/{node_id}/{event_id}.jpg",
                                 "at": beijing_time(at)})
    return out


@router.get("/ponds")
def ponds_page(request: Request, scope: CurrentScope, s: Db, sent: int | None = None) -> Response:
    """Every pond in scope: is it watched, its nodes, its kit, its last event."""
    rows = pond_rows(s, scope)
    last = last_events(s, scope)
    snaps = requested_snapshots(s, scope) if scope.snapshots else {}
    reasons = dict(s.execute(select(Node.id, Node.state_reason).where(
        Node.state == "offline", pond_filter(scope, Node.pond_id))).all())
    for r in rows:
        r["last_event"] = last.get(r["id"])
        r["snapshot"] = snaps.get(r["id"])
        for n in r["nodes"]:
            n["state_reason"] = reasons.get(n["id"])
        # nodes never heard from (no status, heartbeat or event) watch nothing yet
        r["silent"] = (bool(r["nodes"]) and r["last_event"] is None
                       and all(n["state"] == "unknown" for n in r["nodes"]))
        # every node stopped on purpose: nobody is paged, and nobody watches either
        r["stopped"] = bool(r["nodes"]) and all(n["state_reason"] == "planned"
                                                for n in r["nodes"])
        r["watched"] = r["watched"] and not r["silent"] and not r["stopped"]
    return render(request, "ponds.html", scope, ponds=rows, sent=sent,
                  may_command=scope.may_command_nodes)


@router.post("/ponds/{pond_id}/snapshot")
def pond_snapshot(pond_id: str, scope: CurrentScope, svc: Svc, s: Db) -> Response:
    """Ask every node of the pond for a snapshot now (technicians and admins)."""
    pond = pond_in_scope(s, scope, pond_id)
    require(scope.may_command_nodes)
    nodes = list(s.scalars(select(Node.id).where(Node.pond_id == pond.id).order_by(Node.id)))
    for node_id in nodes:
        send_command(svc, s, node_id, "snapshot", scope)
    return RedirectResponse(f"/ponds?sent={len(nodes)}#pond-{pond.id}", status_code=303)


def mercator(lat: float, lon: float, zoom: int) -> tuple[float, float]:
    """Web Mercator pixel position at a zoom level."""
    scale = TILE * 2 ** zoom
    lat = max(min(lat, 85.0), -85.0)
    x = (lon + 180.0) / 360.0 * scale
    r = math.radians(lat)
    y = (1 - math.log(math.tan(r) + 1 / math.cos(r)) / math.pi) / 2 * scale
    return x, y


def layout(points: list[tuple[float, float]]) -> tuple[int, float, float, float, float]:
    """The highest zoom (≤ 17) at which every point fits the map, and its pixel box."""
    zoom = 17
    while True:
        xy = [mercator(lat, lon, zoom) for lat, lon in points]
        x0, x1 = min(x for x, _ in xy), max(x for x, _ in xy)
        y0, y1 = min(y for _, y in xy), max(y for _, y in xy)
        if zoom == 1 or (x1 - x0 <= MAP_W - 2 * PAD and y1 - y0 <= MAP_H - 2 * PAD):
            break
        zoom -= 1
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return zoom, cx - MAP_W / 2, cy - MAP_H / 2, cx, cy


def map_data(s: Session, scope: Scope, tile_url: str | None) -> dict[str, Any]:
    """Pond markers (pixel positions), tiles when configured, a graticule otherwise."""
    ponds = list(s.scalars(select(Pond).where(pond_filter(scope, Pond.id)).order_by(Pond.name)))
    open_ids = set(s.scalars(select(Alert.pond_id).where(Alert.state != "resolved", Alert.urgent,
                                                         pond_filter(scope, Alert.pond_id))))
    placed = [p for p in ponds if p.lat is not None and p.lon is not None]
    unplaced = [{"id": p.id, "name": p.name, "village": p.village} for p in ponds
                if p.lat is None or p.lon is None]
    if not placed:
        return {"markers": [], "unplaced": unplaced, "tiles": [], "grid": [], "w": MAP_W,
                "h": MAP_H}
    zoom, left, top, _, _ = layout([(p.lat or 0.0, p.lon or 0.0) for p in placed])
    markers = []
    for p in placed:
        x, y = mercator(p.lat or 0.0, p.lon or 0.0, zoom)
        markers.append({"id": p.id, "name": p.name, "village": p.village, "lat": p.lat,
                        "lon": p.lon, "x": round(x - left, 1), "y": round(y - top, 1),
                        "alert": p.id in open_ids})
    tiles: list[dict[str, Any]] = []
    if tile_url:
        n = 2 ** zoom
        tx0, tx1 = int(left // TILE), int((left + MAP_W) // TILE)
        ty0, ty1 = int(top // TILE), int((top + MAP_H) // TILE)
        for tx in range(tx0, tx1 + 1):
            for ty in range(max(ty0, 0), min(ty1, n - 1) + 1):
                tiles.append({"href": tile_url.format(z=zoom, x=tx % n, y=ty),
                              "x": round(tx * TILE - left, 1), "y": round(ty * TILE - top, 1)})
        tiles = tiles[:MAX_TILES]
    return {"markers": markers, "unplaced": unplaced, "tiles": tiles, "zoom": zoom,
            "grid": [] if tiles else graticule(zoom, left, top), "w": MAP_W, "h": MAP_H}


def graticule(zoom: int, left: float, top: float) -> list[dict[str, Any]]:
    """Latitude/longitude lines over the map box, at a round step, for the plain plot."""
    scale = TILE * 2 ** zoom
    lon0 = (left / scale) * 360 - 180
    lon1 = ((left + MAP_W) / scale) * 360 - 180
    step = next(st for st in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10,
                              20, 45) if (lon1 - lon0) / st <= 8)
    digits = max(0, -math.floor(math.log10(step) + 1e-9))
    fmt = f"{{:.{digits}f}}"
    lines: list[dict[str, Any]] = []
    v = math.ceil(lon0 / step) * step
    while v <= lon1:
        x, _ = mercator(0, v, zoom)
        lines.append({"axis": "x", "pos": round(x - left, 1), "label": fmt.format(v) + "°E"})
        v += step
    lat_top = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * top / scale))))
    lat_bot = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (top + MAP_H) / scale))))
    v = math.ceil(lat_bot / step) * step
    while v <= lat_top:
        _, y = mercator(v, 0, zoom)
        lines.append({"axis": "y", "pos": round(y - top, 1), "label": fmt.format(v) + "°N"})
        v += step
    return lines


@router.get("/map")
def map_page(request: Request, scope: CurrentScope, svc: Svc, s: Db) -> Response:
    """The ponds in scope on a map: tiles when configured, else a plain coordinate plot."""
    return render(request, "map.html", scope, m=map_data(s, scope, svc.cfg.map_tile_url))


@router.get("/silences")
def silences_page(request: Request, scope: CurrentScope, svc: Svc, s: Db) -> Response:
    """Maintenance windows in scope with pond and node names, and the form for a new one."""
    ponds = {p.id: p for p in s.scalars(select(Pond).where(pond_filter(scope, Pond.id))
                                        .order_by(Pond.name))}
    nodes = list(s.scalars(select(Node).where(pond_filter(scope, Node.pond_id)).order_by(Node.id)))
    rows = [{"pond": ponds[r.pond_id].name if r.pond_id in ponds else r.pond_id,
             "node": r.node_id, "starts": beijing_time(r.starts), "ends": beijing_time(r.ends),
             "reason": r.reason, "by": r.created_by}
            for r in silences_in_scope(s, scope, svc.clock.now())]
    return render(request, "silences.html", scope, silences=rows, ponds=list(ponds.values()),
                  nodes=[{"id": n.id, "pond": ponds[n.pond_id].name if n.pond_id in ponds
                          else n.pond_id} for n in nodes],
                  may_command=scope.may_command_nodes)


@router.post("/silences")
def silence_form(scope: PageScope, svc: Svc, s: Db, minutes: Annotated[float, Form()],
                 pond_id: Annotated[str | None, Form()] = None,
                 node_id: Annotated[str | None, Form()] = None,
                 reason: Annotated[str, Form()] = "") -> Response:
    """Technicians and admins mute a pond or node in scope for a maintenance window."""
    add_silence(svc, s, scope, pond_id, node_id, minutes, reason)
    s.commit()
    return RedirectResponse("/silences", status_code=303)
