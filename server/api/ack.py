"""The acknowledge link: a phone page in Chinese and its buttons, plus the JSON variant."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server.access.links import AckClaims, LinkError
from server.api.actions import AckAction, apply_action
from server.api.deps import Db, Svc, templates
from server.api.queries import alert_dict
from server.core.db import Alert, Person, Pond, event_snapshot

router = APIRouter()


def _claims(svc: Svc, token: str) -> AckClaims:
    """Valid link claims, or 403 with the reason in Chinese."""
    try:
        return svc.links.check(token, svc.clock.now())
    except LinkError as exc:
        msg = "链接已过期" if str(exc) == "expired" else "链接无效"
        raise HTTPException(403, f"{msg} (link {exc})") from exc


def _alert(s: Db, claims: AckClaims) -> Alert:
    """The alert a link names."""
    alert = s.get(Alert, claims.alert_id)
    if alert is None:
        raise HTTPException(404, "告警不存在 (alert not found)")
    return alert


def snapshot_shown(svc: Svc, alert: Alert) -> bool:
    """A link shows the snapshot while its alert is open and for a short grace after."""
    if alert.resolved_at is None:
        return True
    grace = timedelta(seconds=svc.cfg.link_snapshot_grace_s)
    return svc.clock.now() <= alert.resolved_at + grace


@router.get("/a/{token}", response_class=HTMLResponse)
def ack_page(request: Request, token: str, svc: Svc, s: Db, done: str | None = None,
             lang: str = "zh") -> Response:
    """The phone page a page links to; a friendly page when the link is bad or old."""
    try:
        claims = svc.links.check(token, svc.clock.now())
    except LinkError as exc:
        expired = str(exc) == "expired"
        return templates.TemplateResponse(request, "link_error.html", {"expired": expired},
                                          status_code=403)
    alert = _alert(s, claims)
    pond = s.get(Pond, alert.pond_id)
    person = s.get(Person, claims.person_id)
    a = alert_dict(alert, pond)
    a["has_snapshot"] = a["has_snapshot"] and snapshot_shown(svc, alert)
    return templates.TemplateResponse(request, "ack.html", {
        "a": a, "token": token, "person": person,
        "done": {"ack": "ack", "on_scene": "scene", "resolve": "resolved"}.get(done or ""),
        "lang": "en" if lang == "en" else "zh",
    })


@router.post("/a/{token}")
def ack_form(token: str, svc: Svc, s: Db, action: Annotated[str, Form()],
             outcome: Annotated[str | None, Form()] = None, lang: str = "zh") -> Response:
    """A button on the phone page; redirects back to the page."""
    claims = _claims(svc, token)
    alert = _alert(s, claims)
    try:
        body = AckAction.model_validate({"action": action, "outcome": outcome or None})
    except ValueError as exc:
        raise HTTPException(422, "无效操作 (invalid action)") from exc
    apply_action(svc, s, alert, body, claims.person_id)
    suffix = "&lang=en" if lang == "en" else ""
    return RedirectResponse(f"/a/{token}?done={body.action}{suffix}", status_code=303)


@router.post("/api/ack/{token}")
def ack_json(token: str, body: AckAction, svc: Svc, s: Db) -> dict[str, object]:
    """The same actions for a phone app or gateway: JSON in, the alert out."""
    claims = _claims(svc, token)
    alert = _alert(s, claims)
    changed = apply_action(svc, s, alert, body, claims.person_id)
    return {"changed": changed, "alert": alert_dict(alert, s.get(Pond, alert.pond_id))}


@router.get("/a/{token}/snapshot.jpg")
def ack_snapshot(token: str, svc: Svc, s: Db) -> Response:
    """The alert's snapshot, for a valid link while the alert is open (plus the grace)."""
    alert = _alert(s, _claims(svc, token))
    snap = event_snapshot(s, alert.snapshot_event_id)
    if snap is None or not snapshot_shown(svc, alert):
        raise HTTPException(404, "暂无现场照片 (no snapshot)")
    return Response(snap.data, media_type="image/jpeg",
                    headers={"Cache-Control": "private, no-store"})
