"""Shared FastAPI dependencies: the server's parts, database session, the logged-in user and
scope."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import Depends, HTTPException, Request
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session, sessionmaker

from server.access import auth
from server.access.links import AckLinks
from server.access.scope import Scope, scope_for
from server.api import security
from server.core.clock import Clock
from server.core.config import ServerConfig
from server.core.db import Alert, Node, Pond, User
from server.core.errors import ServerError
from server.core.metrics import Metrics
from server.link.ingest import Ingestor
from server.link.supervisor import BrokerSupervisor

templates = Jinja2Templates(directory=str(Path(__file__).parent.parent / "templates"),
                            context_processors=[security.csrf_context])


class ServerParts(Protocol):
    """What routers use of the running server; server.services.Services is one (the app
    checks), so routers never import the wiring above them."""

    cfg: ServerConfig
    clock: Clock
    sessions: sessionmaker[Session]
    metrics: Metrics
    metrics_token: str | None
    links: AckLinks
    web_sessions: auth.Sessions
    throttle: auth.LoginThrottle
    ingest: Ingestor | None
    supervisor: BrokerSupervisor | None


@dataclass(frozen=True)
class WebUser:
    """Who is logged in, and how (cookie sessions carry a CSRF-bound session id)."""

    username: str
    role: str
    person_id: str | None = None
    sid: str | None = None


class LoginRequired(ServerError, PermissionError):
    """Raised for HTML pages; the app turns it into a redirect to /login."""


def get_services(request: Request) -> ServerParts:
    """The server parts (Services) this app was built with."""
    svc: ServerParts = request.app.state.services
    return svc


Svc = Annotated[ServerParts, Depends(get_services)]


def get_db(svc: Svc) -> Iterator[Session]:
    """A database session for one request."""
    with svc.sessions() as s:
        yield s


Db = Annotated[Session, Depends(get_db)]


def client_ip(request: Request) -> str:
    """The client address (the throttle's key): the peer, or behind a trusted proxy the
    right-most X-Forwarded-For entry that is not itself a trusted proxy."""
    peer = request.client.host if request.client else "unknown"
    svc: ServerParts = request.app.state.services
    proxies = svc.cfg.http.trusted_proxies
    if not proxies or not _within(peer, proxies):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _within(hop, proxies):
            return hop[:64]
    return peer


def _within(address: str, networks: list[Any]) -> bool:
    """Whether address lies in one of the networks (False when it is no IP address)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def _basic(request: Request, svc: ServerParts, s: Session) -> WebUser | None:
    """A user from HTTP Basic credentials, for API clients."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        name, _, pw = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    user = auth.login(s, svc.throttle, name, pw, svc.clock.now(), client_ip(request))
    return WebUser(user.username, user.role, user.person_id) if user else None


def admin_credentials(request: Request) -> bool:
    """Whether the request's session cookie or HTTP Basic credentials are an admin's (read
    from headers only, before the body: the body limit asks this for the model upload)."""
    svc: ServerParts = request.app.state.services
    with svc.sessions() as s:
        got = svc.web_sessions.read(s, request.cookies.get(auth.Sessions.COOKIE),
                                    svc.clock.now())
        if got is not None:
            user = s.get(User, got.username)
            return user is not None and user.role == "admin"
        basic = _basic(request, svc, s)
        s.commit()  # the login throttle's bookkeeping
        return basic is not None and basic.role == "admin"


def optional_user(request: Request, svc: Svc, s: Db,
                  posted_csrf: Annotated[str | None, Depends(security.posted_csrf)]
                  ) -> WebUser | None:
    """The user from the session cookie or Basic auth, if any and still existing.

    A cookie-authenticated POST/PUT/PATCH/DELETE without the session's CSRF token is a 403.
    """
    got = svc.web_sessions.read(s, request.cookies.get(auth.Sessions.COOKIE), svc.clock.now())
    if got is not None:
        user = s.get(User, got.username)
        if user is None:
            return None
        request.state.csrf_token = svc.web_sessions.csrf_token(got.sid)
        if request.method not in security.SAFE_METHODS and \
                not svc.web_sessions.csrf_ok(got.sid, posted_csrf):
            raise HTTPException(403, "CSRF 校验失败，请刷新页面后重试 (CSRF token missing or "
                                "wrong: reload the page)")
        return WebUser(user.username, user.role, user.person_id, got.sid)
    return _basic(request, svc, s)


MaybeUser = Annotated[WebUser | None, Depends(optional_user)]


def page_user(user: MaybeUser) -> WebUser:
    """A logged-in user for an HTML page, else a redirect to /login."""
    if user is None:
        raise LoginRequired()
    return user


def api_user(user: MaybeUser) -> WebUser:
    """A logged-in user for the JSON API, else 401."""
    if user is None:
        raise HTTPException(401, "login required", headers={"WWW-Authenticate": "Basic"})
    return user


PageUser = Annotated[WebUser, Depends(page_user)]
ApiUser = Annotated[WebUser, Depends(api_user)]


def _scope(svc: ServerParts, s: Session, user: WebUser) -> Scope:
    """The scope of a logged-in user, from the registry as it is now."""
    row = User(username=user.username, role=user.role, person_id=user.person_id,
               password_hash="")
    return scope_for(s, row, svc.clock.now(), svc.cfg.snapshot_roles)


def page_scope(svc: Svc, s: Db, user: PageUser) -> Scope:
    """The scope for an HTML page (strangers go to /login)."""
    return _scope(svc, s, user)


def api_scope(svc: Svc, s: Db, user: ApiUser) -> Scope:
    """The scope for a JSON route (strangers get 401)."""
    return _scope(svc, s, user)


def current_scope(request: Request, svc: Svc, s: Db, user: MaybeUser) -> Scope:
    """The scope of the request's user: /api/… answers 401 to strangers, pages redirect."""
    if user is None:
        if request.url.path.startswith("/api/"):
            raise HTTPException(401, "login required", headers={"WWW-Authenticate": "Basic"})
        raise LoginRequired()
    return _scope(svc, s, user)


PageScope = Annotated[Scope, Depends(page_scope)]
ApiScope = Annotated[Scope, Depends(api_scope)]
CurrentScope = Annotated[Scope, Depends(current_scope)]

NOT_FOUND = "不存在或无权查看 (not found)"


def not_found() -> HTTPException:
    """The one answer for missing and out-of-scope objects, so neither can be counted."""
    return HTTPException(404, NOT_FOUND)


def pond_in_scope(s: Session, scope: Scope, pond_id: str) -> Pond:
    """The pond, or 404 when it does not exist or is outside scope."""
    pond = s.get(Pond, pond_id) if scope.sees_pond(pond_id) else None
    if pond is None:
        raise not_found()
    return pond


def node_in_scope(s: Session, scope: Scope, node_id: str) -> Node:
    """The node, or 404 when it does not exist or is outside scope."""
    node = s.get(Node, node_id) if scope.sees_node(node_id) else None
    if node is None:
        raise not_found()
    return node


def alert_in_scope(s: Session, scope: Scope, alert_id: int) -> Alert:
    """The alert, or 404 when it does not exist or its pond is outside scope."""
    alert = s.get(Alert, alert_id)
    if alert is None or not scope.sees_pond(alert.pond_id):
        raise not_found()
    return alert


def require(allowed: bool, what: str = "你的角色不能执行此操作 (not allowed for your role)"
            ) -> None:
    """403 unless allowed (call after the object was found in scope)."""
    if not allowed:
        raise HTTPException(403, what)


def scope_context(scope: Scope) -> dict[str, Any]:
    """What templates need to show or hide actions."""
    return {"scope": scope, "may_act": scope.may_act_on_alerts,
            "may_command": scope.may_command_nodes, "may_edit": scope.may_edit_registry}
