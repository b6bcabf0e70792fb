"""Fleet pages for technicians: node health, its history, and remote commands with their answers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access.scope import node_filter
from server.alerting.wording import beijing_time
from server.api.actions import BUTTONS, send_command
from server.api.deps import CurrentScope, Db, Svc, node_in_scope, not_found, require
from server.api.pages import render
from server.core.db import CommandRow, Node, Pond, Snapshot
from server.fleet import health, rollout

router = APIRouter()
SERIES = (("fps", "#0b57a4", "fps"), ("temperature_c", "#b00020", "temp"),
          ("outbox_depth", "#a65e00", "outbox"))


def node_row(s: Session, n: Node, pond: Pond | None, now: datetime) -> dict[str, Any]:
    """What the fleet table shows about one node: health, why it is offline, its model
    beside its pond's assigned one (rollout.node_status)."""
    h = n.health or {}
    seen = max((t for t in (n.health_at, n.state_at) if t is not None), default=None)
    model = rollout.node_status(s, n)
    return {"id": n.id, "pond_id": n.pond_id, "pond": pond.name if pond else n.pond_id,
            "state": n.state, "state_reason": n.state_reason if n.state == "offline" else None,
            "last_seen": beijing_time(seen),
            "ago_s": (now - seen).total_seconds() if seen else None,
            "fps": h.get("fps"), "temperature_c": h.get("temperature_c"),
            "throttled": h.get("throttled"), "outbox_depth": h.get("outbox_depth"),
            "version": n.version or h.get("version"),
            "camera": h.get("camera"), "cpu_percent": h.get("cpu_percent"),
            **{k: model[k] for k in ("model", "model_format", "model_sha256", "assigned_model",
                                     "assigned_sha256", "model_mismatch")}}


def command_rows(s: Session, node_id: str, now: datetime, limit: int = 20) -> list[dict[str, Any]]:
    """Recent commands to a node with the node's answer, newest first."""
    rows = s.scalars(select(CommandRow).where(CommandRow.node_id == node_id)
                     .order_by(CommandRow.created_at.desc()).limit(limit))
    out = []
    for r in rows:
        checks = r.result.get("checks") if isinstance(r.result, dict) else None
        snap = r.result.get("snapshot_id") if isinstance(r.result, dict) and r.ok else None
        out.append({"id": r.id, "cmd": r.cmd, "by": r.created_by,
                    "sent": beijing_time(r.created_at),
                    "answered": r.result_at is not None, "ok": r.ok,
                    "expired": r.result_at is None and r.expires_at < now,
                    "at": beijing_time(r.result_at),
                    "checks": checks if isinstance(checks, list) else None,
                    "snapshot_id": snap if isinstance(snap, str) else None,
                    "result": r.result})
    return out


def _scoped_nodes(s: Session, scope: Any) -> list[tuple[Node, Pond | None]]:
    """Nodes in scope with their pond, by id."""
    q = (select(Node, Pond).join(Pond, Pond.id == Node.pond_id, isouter=True)
         .where(node_filter(scope, Node.id)).order_by(Node.id))
    return [(n, p) for n, p in s.execute(q)]


@router.get("/fleet")
def fleet_page(request: Request, scope: CurrentScope, svc: Svc, s: Db) -> Response:
    """Every node in scope with its latest heartbeat (technicians and admins)."""
    require(scope.may_command_nodes)
    now = svc.clock.now()
    rows = [node_row(s, n, p, now) for n, p in _scoped_nodes(s, scope)]
    # trouble first: lost, then stopped as planned, then throttled or on the wrong model
    rows.sort(key=lambda r: (r["state"] == "online", r["state_reason"] == "planned",
                             not (r["throttled"] or r["model_mismatch"]), r["id"]))
    return render(request, "fleet.html", scope, nodes=rows)


@router.get("/fleet/{node_id}")
def node_page(request: Request, node_id: str, scope: CurrentScope, svc: Svc, s: Db,
              hours: float = 24) -> Response:
    """One node: health now and over time, command buttons and the node's answers."""
    require(scope.may_command_nodes)
    node = node_in_scope(s, scope, node_id)
    now = svc.clock.now()
    hours = min(max(hours, 1), 24 * svc.cfg.health_history_days)
    start = now - timedelta(hours=hours)
    points = health.samples(s, node.id, start)
    chart = Markup(health.chart_svg(points, SERIES, start, now))  # noqa: S704 numbers only
    return render(request, "fleet_node.html", scope,
                  n=node_row(s, node, s.get(Pond, node.pond_id), now),
                  chart=chart, points=len(points), hours=hours, series=SERIES,
                  buttons=list(BUTTONS), commands=command_rows(s, node.id, now))


@router.get("/fleet/{node_id}/commands")
def node_commands(request: Request, node_id: str, scope: CurrentScope, svc: Svc,
                  s: Db) -> Response:
    """The command list alone (the page reloads it while an answer is awaited)."""
    require(scope.may_command_nodes)
    node = node_in_scope(s, scope, node_id)
    return render(request, "_commands.html", scope, n={"id": node.id},
                  commands=command_rows(s, node.id, svc.clock.now()))


@router.get("/snapshots/{node_id}/{snapshot_id}.jpg")
def requested_snapshot(node_id: str, snapshot_id: str, scope: CurrentScope, s: Db) -> Response:
    """A snapshot a node took on request, for roles that may see minors, in scope."""
    node = node_in_scope(s, scope, node_id)
    snap = s.get(Snapshot, {"event_id": snapshot_id, "node_id": node.id})
    if snap is None:
        raise not_found()
    require(scope.snapshots, "您的角色不能查看现场照片 (your role may not see snapshots)")
    return Response(snap.data, media_type="image/jpeg",
                    headers={"Cache-Control": "private, no-store"})


@router.post("/fleet/{node_id}/commands")
def node_command(node_id: str, scope: CurrentScope, svc: Svc, s: Db,
                 cmd: Annotated[str, Form()]) -> Response:
    """A button: snapshot, self-test, horn test, re-enrol, restart or the node's last log
    lines (technicians, admins)."""
    node = node_in_scope(s, scope, node_id)
    require(scope.may_command_nodes)
    row = send_command(svc, s, node.id, cmd, scope)
    return RedirectResponse(f"/fleet/{node.id}#cmd-{row.id}", status_code=303)
