"""Alert pages: the live list (Server-Sent Events), one alert with snapshot, timeline, actions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy import case, select
from sqlalchemy.orm import Session

from server.access.scope import Scope, pond_filter
from server.alerting import alerts
from server.alerting.live import MAX_PER_OWNER, Hub, Subscription
from server.alerting.wording import beijing_time
from server.api import i18n
from server.api.deps import (
    CurrentScope,
    Db,
    LoginRequired,
    MaybeUser,
    ServerParts,
    Svc,
    alert_in_scope,
    current_scope,
    not_found,
    optional_user,
    page_scope,
    require,
)
from server.api.pages import render
from server.api.queries import alert_dict, event_dicts
from server.core.db import Alert, Person, Pond, TimelineEntry, User, event_snapshot

router = APIRouter()
KEEPALIVE_S = 15.0
LIST_LIMIT = 200


def scoped_alerts(s: Session, scope: Scope, state: str | None = None,
                  limit: int = LIST_LIMIT) -> list[dict[str, Any]]:
    """Alerts in scope: open ones first, then newest first."""
    q = (select(Alert, Pond).join(Pond, Pond.id == Alert.pond_id, isouter=True)
         .where(pond_filter(scope, Alert.pond_id)))
    if state == "active":
        q = q.where(Alert.state != "resolved")
    elif state in alerts.STATES:
        q = q.where(Alert.state == state)
    q = q.order_by(case((Alert.state == "resolved", 1), else_=0), Alert.id.desc()).limit(limit)
    return [alert_dict(a, p) for a, p in s.execute(q)]


def people_names(s: Session) -> dict[str, str]:
    """Person ids and user names → the person's name, for timelines."""
    names = {p.id: p.name for p in s.scalars(select(Person))}
    for u in s.scalars(select(User).where(User.person_id.is_not(None))):
        if u.person_id in names:
            names.setdefault(u.username, names[u.person_id])
    return names


def timeline_rows(s: Session, alert_id: int, lang: str) -> list[dict[str, Any]]:
    """The timeline of one alert in words, oldest first."""
    names = people_names(s)
    w = i18n.worder(lang)
    rows = s.scalars(select(TimelineEntry).where(TimelineEntry.alert_id == alert_id)
                     .order_by(TimelineEntry.at, TimelineEntry.id))
    return [{"at": beijing_time(r.at), "kind": r.kind, "kind_words": w("timeline", r.kind),
             "state": r.state, "state_words": w("state", r.state),
             "person": names.get(r.person_id or "", r.person_id or ""),
             "channel": r.channel or "", "result_words": w("result", r.result),
             "result": r.result, "detail": i18n.describe(r.detail, lang, names)} for r in rows]


@router.get("/")
def alerts_page(request: Request, scope: CurrentScope, s: Db,
                state: str | None = None) -> Response:
    """Alerts in scope, open ones first; new ones arrive over /live/alerts."""
    return render(request, "dashboard.html", scope, alerts=scoped_alerts(s, scope, state),
                  filter=state or "")


@router.get("/alerts/{alert_id}/row")
def alert_row(request: Request, alert_id: int, scope: CurrentScope, s: Db) -> Response:
    """One row of the alert list (what the live page inserts)."""
    alert = alert_in_scope(s, scope, alert_id)
    return render(request, "_alert_row.html", scope,
                  a=alert_dict(alert, s.get(Pond, alert.pond_id)))


@router.get("/alerts/{alert_id}")
def alert_page(request: Request, alert_id: int, scope: CurrentScope, s: Db,
               done: str | None = None) -> Response:
    """One alert: snapshot (boxes drawn by the node), events, timeline, and actions."""
    alert = alert_in_scope(s, scope, alert_id)
    lang = i18n.lang_of(request)
    return render(request, "alert.html", scope, a=alert_dict(alert, s.get(Pond, alert.pond_id)),
                  timeline=timeline_rows(s, alert_id, lang), events=event_dicts(s, alert_id),
                  may_act=scope.may_act_on_alerts, may_see=scope.snapshots,
                  done=done if done in ("ack", "on_scene", "resolve") else None)


@router.post("/alerts/{alert_id}")
def alert_action(request: Request, alert_id: int, scope: CurrentScope, svc: Svc, s: Db,
                 action: Annotated[str, Form()],
                 outcome: Annotated[str | None, Form()] = None) -> Response:
    """The buttons: acknowledge, on scene, resolve with an outcome (paged roles and admins)."""
    alert = alert_in_scope(s, scope, alert_id)
    require(scope.may_act_on_alerts)
    try:
        alerts.act(s, alert, action, scope.username, svc.clock.now(), outcome or None,
                   svc.cfg.escalation.policy(alert.policy).on_scene_timeout_s,
                   svc.cfg.false_alarm_budget)
    except alerts.AlertError as exc:
        raise HTTPException(422, str(exc)) from exc
    s.commit()
    return RedirectResponse(f"/alerts/{alert_id}?done={action}", status_code=303)


def _read_scope(request: Request, svc: ServerParts) -> Scope:
    """The requester's scope, read with a short session of its own (LoginRequired if none)."""
    with svc.sessions() as s:
        return current_scope(request, svc, s, optional_user(request, svc, s, None))


async def _stream(sub: Subscription | None, svc: ServerParts, scope: Scope,
                  request: Request) -> AsyncIterator[str]:
    """SSE frames for alerts in scope until the client leaves, its session ends or the server
    stops; the scope is read again at every keepalive (logout and registry edits apply)."""
    if sub is None:
        yield "retry: 5000\nevent: busy\ndata: {}\n\n"
        return
    try:
        yield "retry: 2000\n: connected\n\n"
        while True:
            got = await sub.next(KEEPALIVE_S)
            if got is None:
                return
            if got is False:
                if await request.is_disconnected():
                    return
                try:
                    scope = await asyncio.to_thread(_read_scope, request, svc)
                except (LoginRequired, HTTPException):
                    yield "event: logout\ndata: {}\n\n"
                    return
                yield ": keepalive\n\n"
                continue
            if got is True:
                yield "event: resync\ndata: {}\n\n"
                continue
            if scope.sees_pond(got.pond_id):
                yield f"event: alert\ndata: {json.dumps({'id': got.alert_id})}\n\n"
    finally:
        sub.close()


@router.get("/live/alerts")
async def live_alerts(request: Request, svc: Svc) -> Response:
    """Server-Sent Events: the id of every alert in scope that changes, as it commits.

    The scope is read with a short session of its own: a stream holds no database connection.
    A user holds at most live.MAX_PER_OWNER streams (429 beyond)."""
    scope = await asyncio.to_thread(_read_scope, request, svc)
    hub: Hub = request.app.state.live
    sub = hub.subscribe(scope.username)
    if sub is None and not hub.closed and hub.holds(scope.username) >= MAX_PER_OWNER:
        raise HTTPException(429, "实时连接过多，请关闭其他页面 (too many live streams)")
    return StreamingResponse(_stream(sub, svc, scope, request), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/alerts/{alert_id}/snapshot.jpg")
def alert_snapshot(alert_id: int, user: MaybeUser, svc: Svc, s: Db) -> Response:
    """The snapshot, only in scope and for logged-in roles allowed to see minors."""
    if user is None:
        raise HTTPException(401, "login required")
    scope = page_scope(svc, s, user)
    alert = alert_in_scope(s, scope, alert_id)
    require(scope.snapshots, "你的角色不能查看现场照片 (snapshots are not for your role)")
    snap = event_snapshot(s, alert.snapshot_event_id)
    if snap is None:
        raise not_found()
    return Response(snap.data, media_type="image/jpeg",
                    headers={"Cache-Control": "private, no-store"})
