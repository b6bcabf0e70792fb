"""Dashboard pages for logged-in users: login, alerts, alert detail, ponds, silences."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from server import alerts, auth
from server.api.deps import Db, MaybeUser, PageUser, Svc, require_role, templates
from server.api.views import alert_dict, event_dicts, list_alerts, local, timeline_dicts
from server.db import Alert, EquipmentState, Node, Pond, Silence, Snapshot

router = APIRouter()


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, error: str | None = None) -> Response:
    """The login form."""
    return templates.TemplateResponse(request, "login.html", {"error": error})


@router.post("/login")
def login(svc: Svc, s: Db, username: Annotated[str, Form()],
          password: Annotated[str, Form()]) -> Response:
    """Check the password and set the signed session cookie."""
    user = auth.login(s, svc.throttle, username, password, svc.clock.now())
    if user is None:
        return RedirectResponse("/login?error=1", status_code=303)
    resp = RedirectResponse("/", status_code=303)
    resp.set_cookie(auth.Sessions.COOKIE, svc.web_sessions.issue(user, svc.clock.now()),
                    max_age=svc.cfg.session_ttl_s, httponly=True, samesite="lax",
                    secure=svc.cfg.http.secure_cookies)
    return resp


@router.post("/logout")
def logout() -> Response:
    """Forget the session cookie."""
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(auth.Sessions.COOKIE)
    return resp


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, user: PageUser, s: Db, state: str | None = None) -> Response:
    """Alerts, newest first, with their state."""
    return templates.TemplateResponse(request, "dashboard.html", {
        "user": user, "alerts": list_alerts(s, state), "filter": state or ""})


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(request: Request, alert_id: int, user: PageUser, s: Db) -> Response:
    """One alert with its timeline."""
    alert = s.get(Alert, alert_id)
    if alert is None:
        raise HTTPException(404, "告警不存在")
    may_see = user.role == "admin" or user.role in request.app.state.services.cfg.snapshot_roles
    return templates.TemplateResponse(request, "alert.html", {
        "user": user, "a": alert_dict(alert, s.get(Pond, alert.pond_id)),
        "timeline": timeline_dicts(s, alert_id), "events": event_dicts(s, alert_id),
        "may_see": may_see})


@router.post("/alerts/{alert_id}")
def alert_action(alert_id: int, user: PageUser, svc: Svc, s: Db, action: Annotated[str, Form()],
                 outcome: Annotated[str | None, Form()] = None) -> Response:
    """Dashboard buttons: acknowledge, on scene, resolve."""
    alert = s.get(Alert, alert_id)
    if alert is None:
        raise HTTPException(404, "告警不存在")
    try:
        alerts.act(s, alert, action, user.username, svc.clock.now(), outcome or None)
    except alerts.AlertError as exc:
        raise HTTPException(422, str(exc)) from exc
    s.commit()
    return RedirectResponse(f"/alerts/{alert_id}", status_code=303)


@router.get("/alerts/{alert_id}/snapshot.jpg")
def alert_snapshot(alert_id: int, user: MaybeUser, svc: Svc, s: Db) -> Response:
    """The snapshot, only for logged-in roles allowed to see minors."""
    if user is None:
        raise HTTPException(401, "login required")
    require_role(user, *svc.cfg.snapshot_roles)
    alert = s.get(Alert, alert_id)
    snap = s.get(Snapshot, alert.snapshot_event_id) if alert and alert.snapshot_event_id else None
    if snap is None:
        raise HTTPException(404, "暂无现场照片")
    return Response(snap.data, media_type="image/jpeg",
                    headers={"Cache-Control": "private, no-store"})


def pond_rows(s: Db) -> list[dict[str, Any]]:
    """Per pond: nodes with their state and each kit item present/missing/unknown."""
    out: list[dict[str, Any]] = []
    equipment: dict[str, list[EquipmentState]] = {}
    for e in s.scalars(select(EquipmentState).order_by(EquipmentState.item)):
        equipment.setdefault(e.pond_id, []).append(e)
    nodes: dict[str, list[Node]] = {}
    for n in s.scalars(select(Node).order_by(Node.id)):
        nodes.setdefault(n.pond_id, []).append(n)
    blind: dict[str, list[str]] = {}
    for a in s.scalars(select(Alert).where(Alert.state != "resolved",
                                           Alert.kind.in_(("camera_fault", "node_offline")))):
        blind.setdefault(a.pond_id, []).append(alerts.KIND_ZH.get(a.kind, a.kind))
    for p in s.scalars(select(Pond).order_by(Pond.id)):
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


@router.get("/ponds", response_class=HTMLResponse)
def ponds_page(request: Request, user: PageUser, s: Db) -> Response:
    """Every pond with its nodes and its kit."""
    return templates.TemplateResponse(request, "ponds.html", {"user": user, "ponds": pond_rows(s)})


@router.get("/silences", response_class=HTMLResponse)
def silences_page(request: Request, user: PageUser, svc: Svc, s: Db) -> Response:
    """Current and future maintenance windows, and a form for a new one."""
    now = svc.clock.now()
    rows = s.scalars(select(Silence).where(Silence.ends > now).order_by(Silence.starts))
    return templates.TemplateResponse(request, "silences.html", {
        "user": user, "silences": [{"id": r.id, "pond_id": r.pond_id, "node_id": r.node_id,
                                    "starts": local(r.starts), "ends": local(r.ends),
                                    "reason": r.reason, "by": r.created_by} for r in rows]})


def add_silence(svc: Svc, s: Db, by: str, pond_id: str | None, node_id: str | None,
                minutes: float, reason: str, starts: datetime | None = None) -> Silence:
    """Create a silence (caller commits); 422 on bad input."""
    if not pond_id and not node_id:
        raise HTTPException(422, "需要指定池塘或设备 (pond_id or node_id required)")
    if pond_id and s.get(Pond, pond_id) is None:
        raise HTTPException(422, f"unknown pond {pond_id!r}")
    if node_id and s.get(Node, node_id) is None:
        raise HTTPException(422, f"unknown node {node_id!r}")
    if not 0 < minutes <= 14 * 24 * 60:
        raise HTTPException(422, "minutes must be between 0 and 20160")
    start = starts or svc.clock.now()
    row = Silence(pond_id=pond_id or None, node_id=node_id or None, starts=start,
                  ends=start + timedelta(minutes=minutes), reason=reason[:500], created_by=by)
    s.add(row)
    return row


@router.post("/silences")
def silence_form(user: PageUser, svc: Svc, s: Db, minutes: Annotated[float, Form()],
                 pond_id: Annotated[str | None, Form()] = None,
                 node_id: Annotated[str | None, Form()] = None,
                 reason: Annotated[str, Form()] = "") -> Response:
    """Technicians and admins mute a pond or node for a maintenance window."""
    require_role(user, "technician")
    add_silence(svc, s, user.username, pond_id, node_id, minutes, reason)
    s.commit()
    return RedirectResponse("/silences", status_code=303)
