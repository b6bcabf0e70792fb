"""The acknowledge link: a phone page in Chinese and its buttons, plus the JSON variant.

A link is bound to a person and a live alert: it works only while its alert is not resolved,
only for a person the alert was paged to, and only while the pond is in that person's
scope; resolving through it asks for a confirmation; every use, refused ones too, is on the
alert's timeline with the client address."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import Field
from sqlalchemy import select

from server.access.links import AckClaims, LinkError
from server.access.scope import person_grids
from server.alerting import alerts
from server.api.actions import AckAction, apply_action
from server.api.deps import Db, Svc, client_ip, templates
from server.api.queries import alert_dict
from server.core.db import Alert, Delivery, Person, Pond, event_snapshot

router = APIRouter()
# Why a valid, unexpired link no longer works: the answer's status and words.
REFUSED = {"resolved": (410, "告警已处理，此链接已失效 (the alert is resolved; link closed)"),
           "not_paged": (403, "此链接未发给该人员 (no page to this person for this alert)"),
           "out_of_scope": (403, "该池塘已不在您的负责范围内 (the pond is no longer yours)")}


class LinkAction(AckAction):
    """An action through a link; resolving needs confirm: true."""

    confirm: bool = Field(False, description="Required true with resolve.")


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


def refusal(svc: Svc, s: Db, claims: AckClaims, alert: Alert) -> str | None:
    """Why this link no longer works (a REFUSED key), or None while it does."""
    if alert.state == "resolved":
        return "resolved"
    paged = s.scalar(select(Delivery.id).where(Delivery.alert_id == alert.id,
                                               Delivery.person_id == claims.person_id).limit(1))
    if paged is None:
        return "not_paged"
    pond = s.get(Pond, alert.pond_id)
    if pond is None or pond.grid_id not in person_grids(s, claims.person_id, svc.clock.now()):
        return "out_of_scope"
    return None


def _use(request: Request, svc: Svc, s: Db, token: str, what: str) -> tuple[AckClaims, Alert]:
    """Check the link, record this use on the timeline (committed, refused ones too), and
    return its claims and alert; 403/410 when it no longer works."""
    claims = _claims(svc, token)
    alert = _alert(s, claims)
    why = refusal(svc, s, claims, alert)
    record(request, svc, s, claims, alert, what if why is None else f"{what} refused: {why}")
    if why is not None:
        raise HTTPException(*REFUSED[why])
    return claims, alert


def record(request: Request, svc: Svc, s: Db, claims: AckClaims, alert: Alert,
           what: str) -> None:
    """One use of a link on the alert's timeline, with the client address; commits."""
    alerts.timeline(s, alert, svc.clock.now(), "link",
                    f"{what} from {client_ip(request)}"[:500], person_id=claims.person_id)
    s.commit()


@router.get("/a/{token}", response_class=HTMLResponse)
def ack_page(request: Request, token: str, svc: Svc, s: Db, done: str | None = None,
             lang: str = "zh") -> Response:
    """The phone page a page links to; a friendly page when the link is bad, old, or its
    alert resolved."""
    try:
        claims = svc.links.check(token, svc.clock.now())
    except LinkError as exc:
        expired = str(exc) == "expired"
        return templates.TemplateResponse(request, "link_error.html", {"expired": expired},
                                          status_code=403)
    alert = _alert(s, claims)
    why = refusal(svc, s, claims, alert)
    record(request, svc, s, claims, alert, "page" if why is None else f"page refused: {why}")
    if why is not None:
        return templates.TemplateResponse(
            request, "link_error.html", {"reason": why, "done": done == "resolve"},
            status_code=REFUSED[why][0])
    return _page(request, s, token, alert, claims.person_id, done, lang)


def _page(request: Request, s: Db, token: str, alert: Alert, person_id: str,
          done: str | None, lang: str, confirm: str | None = None) -> Response:
    """The phone page; with confirm (an outcome) it asks to confirm resolving."""
    a, person = alert_dict(alert, s.get(Pond, alert.pond_id)), s.get(Person, person_id)
    return templates.TemplateResponse(request, "ack.html", {
        "a": a, "token": token, "person": person, "confirm": confirm,
        "done": {"ack": "ack", "on_scene": "scene", "resolve": "resolved"}.get(done or ""),
        "lang": "en" if lang == "en" else "zh",
    })


@router.post("/a/{token}")
def ack_form(request: Request, token: str, svc: Svc, s: Db, action: Annotated[str, Form()],
             outcome: Annotated[str | None, Form()] = None,
             confirm: Annotated[str | None, Form()] = None, lang: str = "zh") -> Response:
    """A button on the phone page; redirects back to the page. Resolving shows a
    confirmation first (the confirmed form carries confirm=yes)."""
    try:
        body = LinkAction.model_validate({"action": action, "outcome": outcome or None,
                                          "confirm": confirm == "yes"})
    except ValueError as exc:
        raise HTTPException(422, "无效操作 (invalid action)") from exc
    if body.action == "resolve" and body.outcome is None:
        raise HTTPException(422, "请选择处理结果 (resolve needs an outcome)")
    what = body.action + (f" {body.outcome}" if body.outcome else "")
    if body.action == "resolve" and not body.confirm:
        claims, alert = _use(request, svc, s, token, f"{what} (asked to confirm)")
        return _page(request, s, token, alert, claims.person_id, None, lang,
                     confirm=body.outcome)
    claims, alert = _use(request, svc, s, token, what)
    apply_action(svc, s, alert, body, claims.person_id)
    suffix = "&lang=en" if lang == "en" else ""
    return RedirectResponse(f"/a/{token}?done={body.action}{suffix}", status_code=303)


@router.post("/api/ack/{token}")
def ack_json(request: Request, token: str, body: LinkAction, svc: Svc,
             s: Db) -> dict[str, object]:
    """The same actions for a phone app or gateway: JSON in, the alert out; resolve needs
    "confirm": true (409 without)."""
    what = body.action + (f" {body.outcome}" if body.outcome else "")
    claims, alert = _use(request, svc, s, token, f"{what} (json)")
    if body.action == "resolve" and not body.confirm:
        raise HTTPException(409, "请确认处理结果 (resolve needs \"confirm\": true)")
    changed = apply_action(svc, s, alert, body, claims.person_id)
    return {"changed": changed, "alert": alert_dict(alert, s.get(Pond, alert.pond_id))}


@router.get("/a/{token}/snapshot.jpg")
def ack_snapshot(request: Request, token: str, svc: Svc, s: Db) -> Response:
    """The alert's snapshot, for a link that still works (its alert not resolved)."""
    _, alert = _use(request, svc, s, token, "snapshot")
    snap = event_snapshot(s, alert.snapshot_event_id)
    if snap is None:
        raise HTTPException(404, "暂无现场照片 (no snapshot)")
    return Response(snap.data, media_type="image/jpeg",
                    headers={"Cache-Control": "private, no-store"})
