"""Model routes: upload and assign (admins), fleet model status, and node downloads."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from protocol.topics import Topics
from protocol.validation import StrictModel
from server.access.scope import node_filter
from server.api.deps import ApiScope, Db, ServerParts, Svc, client_ip, require
from server.core.db import ModelAssignment, Node, ServerModel
from server.fleet import rollout
from server.link import commands

log = logging.getLogger(__name__)
router = APIRouter()
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class AssignIn(StrictModel):
    """Assign a model to one pond, or to all ponds (pond_id null)."""

    pond_id: str | None = Field(None, max_length=64, description="Pond id; null for all ponds.")


ADMINS_ONLY = "仅管理员 (admins only)"


def _row(m: ServerModel, targets: list[str]) -> dict[str, Any]:
    """A stored model as JSON."""
    return {"name": m.name, "sha256": m.sha256, "size": m.size, "labels": m.labels,
            "eval": m.eval, "uploaded_by": m.uploaded_by,
            "uploaded_at": m.uploaded_at.isoformat(), "assigned_to": targets}


@router.get("/api/models")
def api_models(scope: ApiScope, s: Db) -> list[dict[str, Any]]:
    """Stored models with their figures and where they are assigned (admins, technicians)."""
    require(scope.may_edit_registry or scope.may_command_nodes)
    targets: dict[str, list[str]] = {}
    for a in s.scalars(select(ModelAssignment)):
        if a.target == rollout.ALL or scope.sees_pond(a.target):  # other grids' ponds unnamed
            targets.setdefault(a.model, []).append(a.target)
    return [_row(m, sorted(targets.get(m.name, [])))
            for m in s.scalars(select(ServerModel).order_by(ServerModel.name))]


@router.post("/api/models", status_code=201)
def api_upload(scope: ApiScope, svc: Svc, s: Db, file: Annotated[UploadFile, File()],
               name: Annotated[str, Form(pattern=NAME_PATTERN)],
               entry: Annotated[str, Form(description="The model's manifest entry as JSON "
                                                      "(labels, eval, sha256).")]
               ) -> dict[str, Any]:
    """Upload a model file with its manifest entry (admins)."""
    require(scope.may_edit_registry, ADMINS_ONLY)
    try:
        meta = json.loads(entry)
    except json.JSONDecodeError as exc:
        raise HTTPException(422, f"entry is not JSON: {exc}") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("labels"), dict):
        raise HTTPException(422, "entry must be an object with labels (a manifest entry)")
    evals = meta.get("eval")
    if evals is not None and not isinstance(evals, dict):
        raise HTTPException(422, "entry.eval must be an object: set name -> figures")
    try:
        row = rollout.store(s, svc.cfg, name, file.file, meta["labels"], evals,
                           scope.username, svc.clock.now(), expected_sha256=meta.get("sha256"))
    except rollout.ModelError as exc:
        raise HTTPException(409, str(exc)) from exc
    s.commit()
    return _row(row, [])


@router.post("/api/models/{name}/assign")
def api_assign(name: str, body: AssignIn, scope: ApiScope, svc: Svc, s: Db) -> dict[str, Any]:
    """Assign a model to a pond or all ponds after the gate; tell the nodes (admins)."""
    require(scope.may_edit_registry, ADMINS_ONLY)
    now = svc.clock.now()
    try:
        row, verdict = rollout.assign(s, svc.cfg.models, name, body.pond_id, scope.username, now)
    except rollout.ModelError as exc:
        raise HTTPException(409 if "gate" in str(exc) else 404, str(exc)) from exc
    s.flush()
    model = s.get(ServerModel, name)
    assert model is not None
    sent, unsent = [], []
    client = svc.ingest.client if svc.ingest else None
    topics = svc.ingest.topics if svc.ingest else Topics(svc.cfg.mqtt.topic_prefix)
    for node in rollout.affected_nodes(s, body.pond_id):
        try:
            commands.send(s, client, topics, node.id, "model_update",
                          rollout.update_args(svc.cfg, model),
                          svc.cfg.models.download_ttl_s, scope.username, now)
            sent.append(node.id)
        except commands.CommandError as exc:
            log.warning("model_update to %s not sent: %s", node.id, exc)
            unsent.append(node.id)
    s.commit()
    return {"target": row.target, "model": name, "figures": verdict.figures,
            "sent_to": sent, "not_sent": unsent}


@router.get("/api/fleet/models")
def api_fleet_models(scope: ApiScope, s: Db) -> list[dict[str, Any]]:
    """Per node in scope: the model it reports (name, format, sha256), its pond's assigned
    model, and model_mismatch when they differ (technicians, admins)."""
    require(scope.may_command_nodes)
    q = select(Node).where(node_filter(scope, Node.id)).order_by(Node.id)
    return [rollout.node_status(s, n) for n in s.scalars(q)]


def node_password_file(svc: ServerParts) -> Path | None:
    """models.node_password_file, else the password file of the server's private broker."""
    if svc.cfg.models.node_password_file is not None:
        return svc.cfg.models.node_password_file
    sup = svc.supervisor
    return sup.credentials.dir / "mosquitto.passwd" if sup is not None else None


def _node_auth(request: Request, svc: ServerParts, s: Session) -> Node:
    """The node proving itself with its MQTT user and password (HTTP Basic), else 401."""
    header = request.headers.get("authorization", "")
    user = pw = ""
    if header.lower().startswith("basic "):
        try:
            user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user = ""
    ip, now, key = client_ip(request), svc.clock.now(), f"node:{user}"
    if svc.throttle.blocked(key, ip, now):  # the web login's throttle, keyed apart
        svc.throttle.refused(ip, now)
        raise HTTPException(429, "too many failed attempts; wait a few minutes")
    node = s.get(Node, user) if user else None
    if node is None or not rollout.check_node_password(node_password_file(svc), user, pw):
        svc.throttle.failed(key, ip, now)
        raise HTTPException(401, "node credentials required",
                            headers={"WWW-Authenticate": 'Basic realm="pondwatch-node"'})
    svc.throttle.succeeded(key, ip)
    return node


@router.get("/node-api/models/{sha256}")
def node_download(sha256: str, request: Request, svc: Svc, s: Db) -> FileResponse:
    """A node downloads the model assigned to its pond (its own credentials; nothing else)."""
    node = _node_auth(request, svc, s)
    want = rollout.assigned_model(s, node.pond_id)
    if want is None or want.sha256 != sha256:
        raise HTTPException(404, "no such model assigned to this node's pond")
    path = rollout.file_path(svc.cfg, sha256)
    if not path.is_file():
        raise HTTPException(410, "model file missing on the server")
    return FileResponse(path, media_type="application/octet-stream",
                        filename=f"{want.name}.pt")
