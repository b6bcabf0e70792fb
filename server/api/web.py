"""Login and logout, the alert snapshot, the silence form, and the scoped pond and silence
queries the pages and the API share."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import or_, select

from server.access import auth
from server.access.scope import Scope, node_filter, pond_filter
from server.alerting import alerts
from server.api.deps import (
    Db,
    MaybeUser,
    PageScope,
    Svc,
    alert_in_scope,
    client_ip,
    not_found,
    page_scope,
    require,
    templates,
)
from server.api.queries import local
from server.api.security import LOGIN_NONCE_COOKIE, cookies_secure
from server.core.db import Alert, EquipmentState, Node, Pond, Silence, Snapshot

router = APIRouter()


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, svc: Svc, error: str | None = None) -> Response:
    """The login form, with a CSRF token bound to a fresh per-browser nonce cookie."""
    nonce = request.cookies.get(LOGIN_NONCE_COOKIE) or secrets.token_urlsafe(16)
    request.state.csrf_token = svc.web_sessions.csrf_token("login:" + nonce)
    resp = templates.TemplateResponse(request, "login.html", {"error": error})
    resp.set_cookie(LOGIN_NONCE_COOKIE, nonce, max_age=3600, httponly=True, samesite="strict",
                    secure=cookies_secure(svc.cfg))
    return resp


@router.post("/login")
def login(request: Request, svc: Svc, s: Db, username: Annotated[str, Form()],
          password: Annotated[str, Form()],
          csrf_token: Annotated[str, Form()] = "") -> Response:
    """Check the CSRF token and the password, then store a session and set its cookie."""
    nonce = request.cookies.get(LOGIN_NONCE_COOKIE)
    if not nonce or not svc.web_sessions.csrf_ok("login:" + nonce, csrf_token):
        return RedirectResponse("/login?error=csrf", status_code=303)
    now = svc.clock.now()
    user = auth.login(s, svc.throttle, username, password, now, client_ip(request))
    if user is None:
        return RedirectResponse("/login?error=1", status_code=303)
    cookie = svc.web_sessions.issue(s, user, now)
    s.commit()
    resp = RedirectResponse("/", status_code=303)
    resp.set_cookie(auth.Sessions.COOKIE, cookie, max_age=svc.cfg.session_ttl_s, httponly=True,
                    samesite="lax", secure=cookies_secure(svc.cfg))
    resp.delete_cookie(LOGIN_NONCE_COOKIE)
    return resp


@router.post("/logout")
def logout(svc: Svc, s: Db, user: MaybeUser) -> Response:
    """End the session on the server (the old cookie stops working) and forget the cookie."""
    if user is not None and user.sid is not None:
        svc.web_sessions.revoke(s, user.sid)
        s.commit()
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(auth.Sessions.COOKIE)
    return resp


@router.get("/alerts/{alert_id}/snapshot.jpg")
def alert_snapshot(alert_id: int, user: MaybeUser, svc: Svc, s: Db) -> Response:
    """The snapshot, only in scope and for logged-in roles allowed to see minors."""
    if user is None:
        raise HTTPException(401, "login required")
    scope = page_scope(svc, s, user)
    alert = alert_in_scope(s, scope, alert_id)
    require(scope.snapshots, "你的角色不能查看现场照片 (snapshots are not for your role)")
    snap = s.get(Snapshot, alert.snapshot_event_id) if alert.snapshot_event_id else None
    if snap is None:
        raise not_found()
    return Response(snap.data, media_type="image/jpeg",
                    headers={"Cache-Control": "private, no-store"})


def pond_rows(s: Db, scope: Scope) -> list[dict[str, Any]]:
    """Per pond in scope: nodes with their state and each kit item present/missing/unknown."""
    out: list[dict[str, Any]] = []
    equipment: dict[str, list[EquipmentState]] = {}
    for e in s.scalars(select(EquipmentState).where(pond_filter(scope, EquipmentState.pond_id))
                       .order_by(EquipmentState.item)):
        equipment.setdefault(e.pond_id, []).append(e)
    nodes: dict[str, list[Node]] = {}
    for n in s.scalars(select(Node).where(pond_filter(scope, Node.pond_id)).order_by(Node.id)):
        nodes.setdefault(n.pond_id, []).append(n)
    blind: dict[str, list[str]] = {}
    for a in s.scalars(select(Alert).where(Alert.state != "resolved",
                                           Alert.kind.in_(("camera_fault", "node_offline")),
                                           pond_filter(scope, Alert.pond_id))):
        blind.setdefault(a.pond_id, []).append(alerts.KIND_ZH.get(a.kind, a.kind))
    for p in s.scalars(select(Pond).where(pond_filter(scope, Pond.id)).order_by(Pond.id)):
        out.append({
            "watched": p.id not in blind and bool(nodes.get(p.id)),
            "faults": blind.get(p.id, []),
            "id": p.id, "name": p.name, "village": p.village, "grid": p.grid_id,
            "nodes": [{"id": n.id, "state": n.state, "since": local(n.state_at),
                       "camera": (n.health or {}).get("camera"),
                       "fps": (n.health or {}).get("fps"),
                       "temperature_c": (n.health or {}).get("temperature_c"),
                       "outbox_depth": (n.health or {}).get("outbox_depth"),
                       "health_at": local(n.health_at)} for n in nodes.get(p.id, [])],
            "equipment": [{"item": e.item, "item_zh": alerts.ITEM_ZH.get(e.item, e.item),
                           "state": e.state, "since": local(e.since),
                           "since_iso": e.since.isoformat() if e.since else None}
                          for e in equipment.get(p.id, [])],
        })
    return out


def silences_in_scope(s: Db, scope: Scope, now: datetime) -> list[Silence]:
    """Current and future silences on ponds or nodes in scope."""
    return list(s.scalars(select(Silence).where(
        Silence.ends > now, or_(pond_filter(scope, Silence.pond_id),
                                node_filter(scope, Silence.node_id)))
        .order_by(Silence.starts)))


def add_silence(svc: Svc, s: Db, scope: Scope, pond_id: str | None, node_id: str | None,
                minutes: float, reason: str, starts: datetime | None = None) -> Silence:
    """Create a silence (caller commits): technicians and admins, ponds/nodes in scope.

    403 for other roles; 422 on bad input, with ponds and nodes outside scope reported
    exactly like unknown ones.
    """
    require(scope.may_command_nodes)
    if not pond_id and not node_id:
        raise HTTPException(422, "需要指定池塘或设备 (pond_id or node_id required)")
    if pond_id and (not scope.sees_pond(pond_id) or s.get(Pond, pond_id) is None):
        raise HTTPException(422, f"unknown pond {pond_id!r}")
    if node_id and (not scope.sees_node(node_id) or s.get(Node, node_id) is None):
        raise HTTPException(422, f"unknown node {node_id!r}")
    if not 0 < minutes <= 14 * 24 * 60:
        raise HTTPException(422, "minutes must be between 0 and 20160")
    start = starts or svc.clock.now()
    row = Silence(pond_id=pond_id or None, node_id=node_id or None, starts=start,
                  ends=start + timedelta(minutes=minutes), reason=reason[:500],
                  created_by=scope.username)
    s.add(row)
    return row


@router.post("/silences")
def silence_form(scope: PageScope, svc: Svc, s: Db, minutes: Annotated[float, Form()],
                 pond_id: Annotated[str | None, Form()] = None,
                 node_id: Annotated[str | None, Form()] = None,
                 reason: Annotated[str, Form()] = "") -> Response:
    """Technicians and admins mute a pond or node in scope for a maintenance window."""
    add_silence(svc, s, scope, pond_id, node_id, minutes, reason)
    s.commit()
    return RedirectResponse("/silences", status_code=303)
