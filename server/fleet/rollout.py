"""Models for the nodes: signed uploads, the recall gate on signed figures, per-pond assignment,
single-use download tokens and node status."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from protocol import signing
from protocol.digest import sha256_stream
from server.core.config import ModelSettings, ServerConfig
from server.core.db import (
    CommandRow,
    ModelAssignment,
    ModelDownloadToken,
    Node,
    Pond,
    ServerModel,
)
from server.core.errors import ServerError

log = logging.getLogger(__name__)

ALL = "*"  # the assignment target meaning every pond without its own


class ModelError(ServerError, ValueError):
    """A model that cannot be stored or assigned; the message says why."""


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict for one model and one pond (or all ponds)."""

    ok: bool
    failures: list[str]
    figures: dict[str, float | None]


def models_dir(cfg: ServerConfig) -> Path:
    """models.dir, else a models folder beside an SQLite database (else /var/lib/pondwatch)."""
    if cfg.models.dir is not None:
        return cfg.models.dir
    if cfg.database.startswith("sqlite:///"):
        return Path(cfg.database.removeprefix("sqlite:///")).resolve().parent / "models"
    return Path("/var/lib/pondwatch/models")


def file_path(cfg: ServerConfig, sha256: str) -> Path:
    """Where the server keeps the model file with this digest."""
    return models_dir(cfg) / f"{sha256}.pt"


def signed(settings: ModelSettings, doc: signing.SignatureDoc | str | None
           ) -> signing.SignedModel:
    """What a model's signature vouches for, by a key of models.trusted_keys; ModelError
    naming why not (none, an unknown key, a payload changed after signing)."""
    if doc is None:
        raise ModelError("the model is not signed (pondwatch-edge model sign NAME --key KEY); "
                         "only models signed by the county's model key are taken")
    try:
        parsed = signing.parse_doc(doc) if isinstance(doc, str) else doc
        return signing.verify(parsed, signing.trusted_keys(settings.trusted_keys))
    except signing.SignatureError as exc:
        raise ModelError(f"signature refused: {exc}") from exc


def store(s: Session, cfg: ServerConfig, name: str, src: IO[bytes],
          signature: signing.SignatureDoc | str | None, by: str, now: datetime
          ) -> ServerModel:
    """Write an uploaded model file (atomically) and record it with its signature; refuse an
    unsigned or wrongly signed file, a name or digest in use. Labels and figures are the
    signed entry's, never the uploader's. The same file under its own name again, with a
    valid signature, replaces the stored signature (a new county key, a re-signed entry)."""
    vouched = signed(cfg.models, signature)
    if vouched.name != name:
        raise ModelError(f"the signature is for model {vouched.name!r}, not {name!r}")
    doc = signing.parse_doc(signature) if isinstance(signature, str) else signature
    assert doc is not None  # signed() refused None
    known = s.get(ServerModel, name)
    if known is not None and (known.sha256, known.size) != (vouched.sha256, vouched.size):
        raise ModelError(f"model {name!r} already exists")
    folder = models_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            sha, size = sha256_stream(src, out.write)
        if size == 0:
            raise ModelError("the uploaded file is empty")
        if sha != vouched.sha256 or size != vouched.size:
            raise ModelError(f"sha256 of the upload is {sha} ({size} bytes), the signature "
                             f"covers {vouched.sha256} ({vouched.size} bytes)")
        if known is None and s.scalar(select(ServerModel).where(ServerModel.sha256 == sha)):
            raise ModelError(f"a model with sha256 {sha} is already stored")
        os.replace(tmp, file_path(cfg, sha))
    finally:
        Path(tmp).unlink(missing_ok=True)
    entry = vouched.entry
    if known is not None:  # the same file re-signed
        known.labels, known.eval = entry.get("labels") or {}, entry.get("eval")
        known.signature, known.uploaded_by, known.uploaded_at = doc.model_dump_json(), by, now
        log.info("model %s re-signed with key %s by %s", name, vouched.key_id, by)
        return known
    row = ServerModel(name=name, sha256=sha, size=size, labels=entry.get("labels") or {},
                      eval=entry.get("eval"), uploaded_by=by, uploaded_at=now,
                      signature=doc.model_dump_json())
    s.add(row)
    return row


def floors_for(settings: ModelSettings, pond_id: str | None) -> dict[str, float]:
    """Set name -> recall floor for a pond (the county's floors, the pond's overrides)."""
    floors = {g.name: g.floor for g in settings.gate}
    if pond_id is not None:
        floors.update(settings.pond_floors.get(pond_id, {}))
    return floors


def gate(settings: ModelSettings, model: ServerModel, pond_ids: list[str | None]) -> GateResult:
    """Does the model reach every set's floor (and stay under its false-detection ceiling) for
    each of these ponds? Failures name set and figure. Only figures the signature covers count
    (checked again here, so a changed row counts for nothing), and only when measured on this
    very file (their sha256)."""
    failures: list[str] = []
    figures: dict[str, float | None] = {}
    try:
        vouched = signed(settings, model.signature)
    except ModelError as exc:
        return GateResult(ok=False, failures=[str(exc)], figures={})
    if vouched.sha256 != model.sha256:
        return GateResult(ok=False, failures=["the signature covers another file"], figures={})
    evals = vouched.entry.get("eval") or {}
    ceilings = {g.name: g.max_false_per_image for g in settings.gate}
    for pond in pond_ids:
        for name, floor in floors_for(settings, pond).items():
            got = evals.get(name)
            recall = got.get("recall") if isinstance(got, dict) else None
            if isinstance(got, dict) and got.get("sha256") not in (None, model.sha256):
                recall = None
                where = f" (pond {pond})" if pond else ""
                failures.append(f"{name}{where}: figures were measured on another file "
                                f"({str(got.get('sha256'))[:12]}…)")
                continue
            figures[name] = recall
            where = f" for pond {pond}" if pond else ""
            if recall is None:
                failures.append(f"{name}: not measured (run pondwatch-edge model train/eval "
                                f"with --eval-set {name}=DIR)")
            elif recall < floor:
                failures.append(f"{name}: recall {recall:.3f} < floor {floor:.3f}{where}")
            ceiling = ceilings.get(name)
            if recall is not None and ceiling is not None:
                fpi = got.get("false_per_image") if isinstance(got, dict) else None
                if not isinstance(fpi, int | float):
                    failures.append(f"{name}: false detections per image not measured")
                elif fpi > ceiling + 1e-9:
                    failures.append(f"{name}: {fpi:.2f} false detections per image > ceiling "
                                    f"{ceiling:.2f}{where}")
    return GateResult(ok=not failures, failures=sorted(set(failures)), figures=figures)


def assign(s: Session, settings: ModelSettings, name: str, pond_id: str | None, by: str,
           now: datetime) -> tuple[ModelAssignment, GateResult]:
    """Assign a stored model to a pond (None: to all); ModelError when the gate refuses."""
    model = s.get(ServerModel, name)
    if model is None:
        raise ModelError(f"unknown model {name!r}")
    if pond_id is not None and s.get(Pond, pond_id) is None:
        raise ModelError(f"unknown pond {pond_id!r}")
    ponds: list[str | None] = [pond_id] if pond_id else [None, *settings.pond_floors]
    verdict = gate(settings, model, ponds)
    if not verdict.ok:
        raise ModelError("gate refused " + name + ": " + "; ".join(verdict.failures))
    target = pond_id or ALL
    row = s.get(ModelAssignment, target)
    if row is None:
        row = ModelAssignment(target=target, model=name, assigned_by=by, assigned_at=now)
        s.add(row)
    else:
        row.model, row.assigned_by, row.assigned_at = name, by, now
    log.info("model %s assigned to %s by %s", name, target, by)
    return row, verdict


def assigned_model(s: Session, pond_id: str) -> ServerModel | None:
    """The model a pond's nodes should run: the pond's own assignment, else the '*' one."""
    row = s.get(ModelAssignment, pond_id) or s.get(ModelAssignment, ALL)
    return s.get(ServerModel, row.model) if row is not None else None


def affected_nodes(s: Session, pond_id: str | None) -> list[Node]:
    """Nodes that follow an assignment to pond_id (None: ponds without their own)."""
    q = select(Node).order_by(Node.id)
    if pond_id is not None:
        q = q.where(Node.pond_id == pond_id)
    else:
        own = select(ModelAssignment.target).where(ModelAssignment.target != ALL)
        q = q.where(Node.pond_id.not_in(own))
    return list(s.scalars(q))


def node_status(s: Session, node: Node) -> dict[str, Any]:
    """What the node says it runs beside what its pond is assigned; mismatch flags a node
    whose model differs (None when nothing is assigned or the node has not said)."""
    h = node.health or {}
    want = assigned_model(s, node.pond_id)
    running = h.get("model_sha256")
    mismatch = None if want is None or running is None else running != want.sha256
    return {"node_id": node.id, "pond_id": node.pond_id, "model": h.get("model"),
            "model_format": h.get("model_format"), "model_sha256": running,
            "assigned_model": want.name if want else None,
            "assigned_sha256": want.sha256 if want else None, "model_mismatch": mismatch}


def update_args(s: Session, cfg: ServerConfig, model: ServerModel, node_id: str,
                now: datetime) -> dict[str, Any]:
    """The model_update command's arguments: what to fetch, a single-use download token for
    this node and file (valid as long as the command), and the signature the node checks."""
    base = cfg.http.public_url.rstrip("/")
    s.execute(delete(ModelDownloadToken).where(ModelDownloadToken.expires_at < now))
    token = secrets.token_urlsafe(32)
    s.add(ModelDownloadToken(token_sha256=_hash(token), node_id=node_id,
                             model_sha256=model.sha256, used_at=None,
                             expires_at=now + timedelta(seconds=cfg.models.download_ttl_s)))
    return {"name": model.name, "sha256": model.sha256, "size": model.size,
            "labels": model.labels, "url": f"{base}/node-api/models/{model.sha256}",
            "token": token,
            "signature": json.loads(model.signature) if model.signature else None}


def _hash(token: str) -> str:
    """Tokens are kept as their sha256."""
    return hashlib.sha256(token.encode()).hexdigest()


def redeem(s: Session, token: str, sha256: str, now: datetime) -> Node | None:
    """The node a download token was handed to, when it is unused, unexpired, for this file,
    and the file is still the one assigned to that node's pond; the token is spent."""
    row = s.get(ModelDownloadToken, _hash(token)) if token else None
    if row is None or row.used_at is not None or row.expires_at <= now:
        return None
    if row.model_sha256 != sha256:
        return None
    node = s.get(Node, row.node_id)
    want = assigned_model(s, node.pond_id) if node is not None else None
    if node is None or want is None or want.sha256 != sha256:
        return None
    row.used_at = now
    return node


def due_updates(s: Session, now: datetime) -> list[tuple[Node, ServerModel]]:
    """Nodes that report another model than their pond's and were never told, or whose last
    model_update for it expired unanswered (offline then). A node that answered, even with a
    refusal, is not asked again: its answer and the mismatch flag are for an admin to read."""
    out = []
    for node in s.scalars(select(Node).order_by(Node.id)):
        want = assigned_model(s, node.pond_id)
        running = (node.health or {}).get("model_sha256")
        if want is None or running is None or running == want.sha256:
            continue
        last = s.scalars(select(CommandRow).where(CommandRow.node_id == node.id,
                                                  CommandRow.cmd == "model_update")
                         .order_by(CommandRow.created_at.desc())).first()
        if (last is not None and last.args.get("sha256") == want.sha256
                and (last.result_at is not None or last.expires_at > now)):
            continue
        out.append((node, want))
    return out
