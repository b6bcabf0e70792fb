"""Login and logout: the form with its CSRF nonce, the session cookie, ending the session."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server.access import auth
from server.api.deps import (
    Db,
    MaybeUser,
    Svc,
    client_ip,
    templates,
)
from server.api.security import LOGIN_NONCE_COOKIE, cookies_secure

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
