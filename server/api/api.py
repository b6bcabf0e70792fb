"""JSON API for alerts, ponds, silences and node commands, plus /metrics and /healthz."""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from protocol.topics import Topics
from server import commands
from server.api.ack import AckAction, apply_action
from server.api.deps import ApiUser, Db, Svc, require_role
from server.api.views import alert_dict, event_dicts, list_alerts, timeline_dicts
from server.api.web import add_silence, pond_rows
from server.db import Alert, CommandRow, Node, Pond

router = APIRouter()


class SilenceIn(BaseModel):
    """A maintenance window request."""

    model_config = ConfigDict(extra="forbid")
    pond_id: str | None = Field(None, description="Pond to mute.")
    node_id: str | None = Field(None, description="Node to mute.")
    minutes: float = Field(gt=0, le=20160, description="Length of the window.")
    reason: str = Field("", max_length=500, description="Why.")
    starts: datetime | None = Field(None, description="Start (default now), with timezone.")


@router.get("/healthz")
def healthz(svc: Svc) -> dict[str, Any]:
    """Liveness: the web side answers even while the broker is away."""
    ing = svc.ingest
    return {"ok": True, "mqtt_connected": bool(ing and ing.connected.is_set()),
            "ingest_queue": ing.queue.qsize() if ing else 0}


def _check_metrics_token(request: Request, token: str | None) -> None:
    """401 unless the request carries the configured bearer token (none set: open)."""
    if token is None:
        return
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                             token.encode()):
        raise HTTPException(401, "bearer token required",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})


@router.get("/metrics")
def metrics(request: Request, svc: Svc, s: Db) -> Response:
    """Prometheus text exposition; needs `Authorization: Bearer TOKEN` when metrics_token
    is set."""
    _check_metrics_token(request, svc.metrics_token)
    open_n = s.scalar(select(func.count()).select_from(Alert).where(Alert.state != "resolved"))
    svc.metrics.open_alerts.set(open_n or 0)
    return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/api/alerts")
def api_alerts(user: ApiUser, s: Db, state: str | None = None, limit: int = 200
               ) -> list[dict[str, Any]]:
    """Alerts, newest first; state=active for everything not resolved."""
    return list_alerts(s, state, max(1, min(limit, 1000)))


@router.get("/api/alerts/{alert_id}")
def api_alert(alert_id: int, user: ApiUser, s: Db) -> dict[str, Any]:
    """One alert with its timeline."""
    alert = s.get(Alert, alert_id)
    if alert is None:
        raise HTTPException(404, "alert not found")
    return dict(alert_dict(alert, s.get(Pond, alert.pond_id)), timeline=timeline_dicts(s, alert_id),
                events=event_dicts(s, alert_id))


@router.post("/api/alerts/{alert_id}/actions")
def api_action(alert_id: int, body: AckAction, user: ApiUser, svc: Svc, s: Db) -> dict[str, Any]:
    """Acknowledge, report on scene, or resolve with an outcome."""
    alert = s.get(Alert, alert_id)
    if alert is None:
        raise HTTPException(404, "alert not found")
    changed = apply_action(svc, s, alert, body, user.username)
    return {"changed": changed, "alert": alert_dict(alert, s.get(Pond, alert.pond_id))}


class CommandIn(BaseModel):
    """A command for one node."""

    model_config = ConfigDict(extra="forbid")
    cmd: str = Field(min_length=1, max_length=40, description="Command name the node knows.")
    args: dict[str, Any] = Field(default_factory=dict, description="Arguments.")
    ttl_s: int = Field(300, ge=1, le=7 * 86400, description="Seconds until it expires.")


@router.post("/api/nodes/{node_id}/commands", status_code=201)
def api_command(node_id: str, body: CommandIn, user: ApiUser, svc: Svc, s: Db) -> dict[str, Any]:
    """Send a command to a node (technician or admin); the answer appears on GET."""
    require_role(user, "technician")
    if s.get(Node, node_id) is None:
        raise HTTPException(404, "node not found")
    client = svc.ingest.client if svc.ingest else None
    try:
        row = commands.send(s, client, svc.ingest.topics if svc.ingest else Topics(),
                            node_id, body.cmd, body.args, body.ttl_s, user.username,
                            svc.clock.now())
    except commands.CommandError as exc:
        raise HTTPException(503, str(exc)) from exc
    s.commit()
    return {"id": row.id, "expires_at": row.expires_at.isoformat()}


@router.get("/api/nodes/{node_id}/commands")
def api_commands(node_id: str, user: ApiUser, s: Db) -> list[dict[str, Any]]:
    """Recent commands to a node with their answers."""
    rows = s.scalars(select(CommandRow).where(CommandRow.node_id == node_id)
                     .order_by(CommandRow.created_at.desc()).limit(50))
    return [{"id": r.id, "cmd": r.cmd, "args": r.args, "created_at": r.created_at.isoformat(),
             "expires_at": r.expires_at.isoformat(), "ok": r.ok, "result": r.result,
             "result_at": r.result_at.isoformat() if r.result_at else None} for r in rows]


@router.get("/api/ponds")
def api_ponds(user: ApiUser, s: Db) -> list[dict[str, Any]]:
    """Per pond: nodes and kit items present / missing (since) / unknown."""
    return pond_rows(s)


@router.post("/api/silences", status_code=201)
def api_silence(body: SilenceIn, user: ApiUser, svc: Svc, s: Db) -> dict[str, Any]:
    """Mute a pond or node for a maintenance window (technician or admin)."""
    require_role(user, "technician")
    if body.starts is not None and body.starts.tzinfo is None:
        raise HTTPException(422, "starts needs a timezone")
    row = add_silence(svc, s, user.username, body.pond_id, body.node_id, body.minutes,
                      body.reason, body.starts)
    s.commit()
    return {"id": row.id, "starts": row.starts.isoformat(), "ends": row.ends.isoformat()}
