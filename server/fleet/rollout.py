"""Models for the nodes: stored files, the recall gate, per-pond assignment and node status."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from protocol.digest import sha256_stream
from server.core.config import ModelSettings, ServerConfig
from server.core.db import CommandRow, ModelAssignment, Node, Pond, ServerModel
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


def store(s: Session, cfg: ServerConfig, name: str, src: IO[bytes],
          labels: dict[str, list[str]], evals: dict[str, Any] | None, by: str,
          now: datetime, expected_sha256: str | None = None) -> ServerModel:
    """Write an uploaded model file (atomically) and record it; refuse a name or digest in use."""
    if s.get(ServerModel, name) is not None:
        raise ModelError(f"model {name!r} already exists")
    folder = models_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            sha, size = sha256_stream(src, out.write)
        if size == 0:
            raise ModelError("the uploaded file is empty")
        if expected_sha256 and sha != expected_sha256:
            raise ModelError(f"sha256 of the upload is {sha}, the form says {expected_sha256}")
        if s.scalar(select(ServerModel).where(ServerModel.sha256 == sha)) is not None:
            raise ModelError(f"a model with sha256 {sha} is already stored")
        os.replace(tmp, file_path(cfg, sha))
    finally:
        Path(tmp).unlink(missing_ok=True)
    row = ServerModel(name=name, sha256=sha, size=size, labels=labels, eval=evals,
                      uploaded_by=by, uploaded_at=now)
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
    each of these ponds? Failures name set and figure. Figures count only when measured on
    this very file (their sha256)."""
    failures: list[str] = []
    figures: dict[str, float | None] = {}
    evals = model.eval or {}
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


def update_args(cfg: ServerConfig, model: ServerModel) -> dict[str, Any]:
    """The model_update command's arguments: what to fetch and check."""
    base = cfg.http.public_url.rstrip("/")
    return {"name": model.name, "sha256": model.sha256, "size": model.size,
            "labels": model.labels, "url": f"{base}/node-api/models/{model.sha256}"}


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


def check_node_password(password_file: Path | None, user: str, password: str) -> bool:
    """True when user:password matches the Mosquitto password file ($7$ PBKDF2-SHA512 or $6$
    salted SHA-512, as mosquitto_passwd writes them)."""
    if password_file is None or not user or not password:
        return False
    try:
        lines = password_file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        log.error("node password file %s unreadable: %s", password_file, exc)
        return False
    for line in lines:
        name, sep, stored = line.strip().partition(":")
        if sep and name == user:
            return _matches(stored, password)
    return False


def _matches(stored: str, password: str) -> bool:
    """Compare a password with one mosquitto_passwd hash."""
    parts = stored.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            iterations, salt, want = int(parts[2]), base64.b64decode(parts[3]), parts[4]
            got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
        elif len(parts) == 4 and parts[1] == "6":
            salt, want = base64.b64decode(parts[2]), parts[3]
            got = hashlib.sha512(password.encode() + salt).digest()
        else:
            return False
        return hmac.compare_digest(base64.b64decode(want), got)
    except (ValueError, TypeError):
        return False
