"""The JSON API under /api/: who I am, alerts and their actions, ponds, silences, node commands."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import Field
from sqlalchemy import select

from protocol.topics import Topics
from protocol.validation import StrictModel
from server.api.actions import AckAction, add_silence, apply_action, require_command
from server.api.deps import ApiScope, Db, Svc, alert_in_scope, node_in_scope, require
from server.api.queries import (
    alert_dict,
    event_dicts,
    list_alerts,
    pond_rows,
    timeline_dicts,
)
from server.core.db import CommandRow, Pond
from server.link import commands

router = APIRouter()


class SilenceIn(StrictModel):
    """A maintenance window request."""

    pond_id: str | None = Field(None, description="Pond to mute.")
    node_id: str | None = Field(None, description="Node to mute.")
    minutes: float = Field(gt=0, le=20160, description="Length of the window.")
    reason: str = Field("", max_length=500, description="Why.")
    starts: datetime | None = Field(None, description="Start (default now), with timezone.")


@router.get("/api/me")
def api_me(request: Request, scope: ApiScope) -> dict[str, Any]:
    """Who is logged in, what they may do, and the CSRF token for X-CSRF-Token."""
    return {"username": scope.username, "role": scope.role, "person_id": scope.person_id,
            "everything": scope.everything, "grids": sorted(scope.grid_ids),
            "ponds": sorted(scope.pond_ids), "snapshots": scope.snapshots,
            "may_act_on_alerts": scope.may_act_on_alerts,
            "may_command_nodes": scope.may_command_nodes,
            "may_edit_registry": scope.may_edit_registry,
            "csrf_token": getattr(request.state, "csrf_token", None)}


@router.get("/api/alerts")
def api_alerts(scope: ApiScope, s: Db, state: str | None = None, limit: int = 200
               ) -> list[dict[str, Any]]:
    """Alerts in scope, newest first; state=active for everything not resolved."""
    return list_alerts(s, state, max(1, min(limit, 1000)), scope=scope)


@router.get("/api/alerts/{alert_id}")
def api_alert(alert_id: int, scope: ApiScope, s: Db) -> dict[str, Any]:
    """One alert with its timeline (404 outside scope)."""
    alert = alert_in_scope(s, scope, alert_id)
    return dict(alert_dict(alert, s.get(Pond, alert.pond_id)), timeline=timeline_dicts(s, alert_id),
                events=event_dicts(s, alert_id))


@router.post("/api/alerts/{alert_id}/actions")
def api_action(alert_id: int, body: AckAction, scope: ApiScope, svc: Svc,
               s: Db) -> dict[str, Any]:
    """Acknowledge, report on scene, or resolve with an outcome (paged roles and admins)."""
    alert = alert_in_scope(s, scope, alert_id)
    require(scope.may_act_on_alerts)
    changed = apply_action(svc, s, alert, body, scope.username)
    return {"changed": changed, "alert": alert_dict(alert, s.get(Pond, alert.pond_id))}


class CommandIn(StrictModel):
    """A command for one node."""

    cmd: str = Field(min_length=1, max_length=40,
                     description="An operator command of protocol.commands (model_update and "
                     "logs come only from the server's own code paths).")
    args: dict[str, Any] = Field(default_factory=dict,
                                 description="Arguments, checked against the command's schema.")
    ttl_s: int = Field(300, ge=1, le=7 * 86400, description="Seconds until it expires.")


@router.post("/api/nodes/{node_id}/commands", status_code=201)
def api_command(node_id: str, body: CommandIn, scope: ApiScope, svc: Svc,
                s: Db) -> dict[str, Any]:
    """Send a command to a node in scope (technician or admin); the answer appears on GET."""
    node_in_scope(s, scope, node_id)
    require(scope.may_command_nodes)
    require_command(scope, body.cmd)
    client = svc.ingest.client if svc.ingest else None
    try:
        row = commands.send(s, client, svc.ingest.topics if svc.ingest else Topics(),
                            node_id, body.cmd, body.args, body.ttl_s, scope.username,
                            svc.clock.now())
    except commands.CommandTooLarge as exc:
        raise HTTPException(413, str(exc)) from exc
    except commands.CommandInvalid as exc:
        raise HTTPException(422, str(exc)) from exc
    except commands.CommandError as exc:
        raise HTTPException(503, str(exc)) from exc
    s.commit()
    return {"id": row.id, "expires_at": row.expires_at.isoformat()}


@router.get("/api/nodes/{node_id}/commands")
def api_commands(node_id: str, scope: ApiScope, s: Db) -> list[dict[str, Any]]:
    """Recent commands to a node in scope with their answers (technician or admin)."""
    node_in_scope(s, scope, node_id)
    require(scope.may_command_nodes)
    rows = s.scalars(select(CommandRow).where(CommandRow.node_id == node_id)
                     .order_by(CommandRow.created_at.desc()).limit(50))
    return [{"id": r.id, "cmd": r.cmd, "args": r.args, "created_at": r.created_at.isoformat(),
             "expires_at": r.expires_at.isoformat(), "ok": r.ok, "result": r.result,
             "result_at": r.result_at.isoformat() if r.result_at else None} for r in rows]


@router.get("/api/ponds")
def api_ponds(scope: ApiScope, s: Db) -> list[dict[str, Any]]:
    """Per pond in scope: nodes and kit items present / missing (since) / unknown."""
    return pond_rows(s, scope)


@router.post("/api/silences", status_code=201)
def api_silence(body: SilenceIn, scope: ApiScope, svc: Svc, s: Db) -> dict[str, Any]:
    """Mute a pond or node in scope for a maintenance window (technician or admin)."""
    require(scope.may_command_nodes)
    if body.starts is not None and body.starts.tzinfo is None:
        raise HTTPException(422, "starts needs a timezone")
    row = add_silence(svc, s, scope, body.pond_id, body.node_id, body.minutes,
                      body.reason, body.starts)
    s.commit()
    return {"id": row.id, "starts": row.starts.isoformat(), "ends": row.ends.isoformat()}
