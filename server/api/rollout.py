"""Model routes: upload and assign (admins), fleet model status, and node downloads."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse
from pydantic import Field
from sqlalchemy import select

from protocol import signing
from protocol.topics import Topics
from protocol.validation import StrictModel
from server.access.scope import node_filter
from server.api.deps import ApiScope, Db, Svc, client_ip, require
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
               signature: Annotated[str | None, Form(
                   max_length=signing.MAX_SIG_BYTES,
                   description="NAME.pt.sig: the signer's document (pondwatch-edge model "
                   "sign); it carries the manifest entry and figures.")] = None,
               entry: Annotated[str | None, Form(
                   max_length=signing.MAX_SIG_BYTES,
                   description="The manifest entry as JSON; when given it must equal the "
                   "signed one (the signed one is what counts).")] = None,
               ) -> dict[str, Any]:
    """Upload a model file signed by a key of models.trusted_keys (admins); unsigned files,
    other keys and entries changed after signing are refused."""
    require(scope.may_edit_registry, ADMINS_ONLY)
    try:
        vouched = rollout.signed(svc.cfg.models, signature)
        if entry is not None and json.loads(entry) != vouched.entry:
            raise rollout.ModelError("the entry sent differs from the signed entry (changed "
                                     "after signing?); refused")
        row = rollout.store(s, svc.cfg, name, file.file, signature, scope.username,
                            svc.clock.now())
    except json.JSONDecodeError as exc:
        raise HTTPException(422, f"entry is not JSON: {exc}") from exc
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
                          rollout.update_args(s, svc.cfg, model, node.id, now),
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


def _bearer(request: Request) -> str:
    """The bearer token of a request, or ''."""
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


@router.get("/node-api/models/{sha256}")
def node_download(sha256: str, request: Request, svc: Svc, s: Db) -> FileResponse:
    """A node downloads the model assigned to its pond with the single-use token its
    model_update carried (nothing else: no password travels, no other file is served)."""
    ip, now = client_ip(request), svc.clock.now()
    key = f"model-token:{ip}"
    if svc.throttle.blocked(key, ip, now):  # the web login's throttle, keyed apart
        svc.throttle.refused(ip, now)
        raise HTTPException(429, "too many failed attempts; wait a few minutes")
    node = rollout.redeem(s, _bearer(request), sha256, now)
    if node is None:
        svc.throttle.failed(key, ip, now)
        s.rollback()
        raise HTTPException(401, "a valid, unused download token for this model is required",
                            headers={"WWW-Authenticate": 'Bearer realm="pondwatch-node"'})
    s.commit()  # the token is spent
    svc.throttle.succeeded(key, ip)
    path = rollout.file_path(svc.cfg, sha256)
    if not path.is_file():
        raise HTTPException(410, "model file missing on the server")
    log.info("model %s downloaded by %s", sha256[:12], node.id)
    return FileResponse(path, media_type="application/octet-stream", filename=f"{sha256}.pt")
