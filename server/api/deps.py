"""Shared FastAPI dependencies: services, database session, the logged-in user."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from server import auth
from server.db import User
from server.services import Services

templates = Jinja2Templates(directory=str(Path(__file__).parent.parent / "templates"))


@dataclass(frozen=True)
class WebUser:
    """Who is logged in."""

    username: str
    role: str


class LoginRequired(Exception):
    """Raised for HTML pages; the app turns it into a redirect to /login."""


def get_services(request: Request) -> Services:
    """The Services this app was built with."""
    svc: Services = request.app.state.services
    return svc


Svc = Annotated[Services, Depends(get_services)]


def get_db(svc: Svc) -> Iterator[Session]:
    """A database session for one request."""
    with svc.sessions() as s:
        yield s


Db = Annotated[Session, Depends(get_db)]


def _basic(request: Request, svc: Services, s: Session) -> WebUser | None:
    """A user from HTTP Basic credentials, for API clients."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        name, _, pw = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    user = auth.login(s, svc.throttle, name, pw, svc.clock.now())
    return WebUser(user.username, user.role) if user else None


def optional_user(request: Request, svc: Svc, s: Db) -> WebUser | None:
    """The user from the session cookie or Basic auth, if any and still existing."""
    got = svc.web_sessions.read(request.cookies.get(auth.Sessions.COOKIE), svc.clock.now())
    if got is not None:
        user = s.get(User, got[0])
        return WebUser(user.username, user.role) if user is not None else None
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


def require_role(user: WebUser, *roles: str) -> None:
    """403 unless the user has one of the roles (admin always may)."""
    if user.role != "admin" and user.role not in roles:
        raise HTTPException(403, "not allowed for your role")
