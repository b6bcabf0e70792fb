"""Browser-facing defences: security headers, the Origin check and CSRF token plumbing."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.core.config import ServerConfig
from server.core.net import is_loopback

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
LOGIN_NONCE_COOKIE = "pw_login_nonce"
HEADERS = {
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
}


def content_security_policy(img_origins: Iterable[str] = ()) -> str:
    """The CSP every response carries: only this site's own scripts, styles, images and
    connections (no inline script or style, no eval), images also from img_origins (the map
    tile server), forms posted only here, never framed."""
    img = " ".join(["'self'", *img_origins])
    return (f"default-src 'self'; img-src {img}; form-action 'self'; frame-ancestors 'none'; "
            "base-uri 'self'; object-src 'none'")


def tile_origins(tile_url: str | None) -> list[str]:
    """The origin of an absolute map_tile_url (a relative one is this site's)."""
    parts = urlsplit(tile_url or "")
    if parts.scheme in ("http", "https") and parts.netloc:
        return [f"{parts.scheme}://{parts.netloc}"]
    return []


def cookies_secure(cfg: ServerConfig) -> bool:
    """Cookies are Secure behind an https public_url, when configured, and outside dev
    unless the site is only served on this machine (http://127.0.0.1, localhost)."""
    if cfg.http.secure_cookies or cfg.http.public_url.lower().startswith("https://"):
        return True
    host = urlsplit(cfg.http.public_url).hostname or ""
    return cfg.environment != "dev" and not is_loopback(host)


def warn_plain_http(cfg: ServerConfig) -> None:
    """Say so when Secure cookies meet a plain-http public_url (browsers will not log in)."""
    if cookies_secure(cfg) and cfg.http.public_url.lower().startswith("http://"):
        log.warning("public_url %s is plain http but session cookies are Secure outside "
                    "environment: dev: serve it over https (a TLS proxy) and set public_url "
                    "to the https address, or logins will not stick", cfg.http.public_url)


async def posted_csrf(request: Request) -> str | None:
    """The CSRF token a state-changing request carries: X-CSRF-Token header or form field."""
    if request.method in SAFE_METHODS:
        return None
    token = request.headers.get(CSRF_HEADER)
    if token:
        return token
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def csrf_context(request: Request) -> dict[str, Any]:
    """Template globals: the token every form posts back (and JS sends as X-CSRF-Token)."""
    return {"csrf_token": getattr(request.state, "csrf_token", "")}


def _origin(url: str) -> str:
    """scheme://host[:port] of a URL, lower case."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class SecurityMiddleware:
    """Adds the security headers to every response; refuses cross-site unsafe requests.

    A POST/PUT/PATCH/DELETE whose Origin (or, without one, Referer) is neither public_url
    nor the Host it was sent to is a 403. Requests with neither header (API clients,
    gateways) pass here; cookie-authenticated ones still need the CSRF token.
    """

    def __init__(self, app: ASGIApp, public_url: str, csp: str | None = None) -> None:
        """Wrap app; public_url is the site's own origin; csp the Content-Security-Policy
        (content_security_policy() when None)."""
        self.app = app
        self.public_origin = _origin(public_url)
        self.headers = {**HEADERS, "content-security-policy": csp or content_security_policy()}

    def _same_site(self, headers: Headers) -> bool:
        """Whether the request's Origin/Referer names this site (or is absent)."""
        source = headers.get("origin") or headers.get("referer")
        if source is None:
            return True
        if source == "null":
            return False
        origin = _origin(source)
        host = headers.get("host", "").lower()
        return origin == self.public_origin or (bool(host) and urlsplit(origin).netloc == host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the origin, then pass on with the headers added."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            """Add the headers to the response start."""
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for k, v in self.headers.items():
                    if k not in out:
                        out[k] = v
            await send(message)

        headers = Headers(scope=scope)
        if scope["method"] not in SAFE_METHODS and not self._same_site(headers):
            log.warning("refused cross-site %s %r from origin %r", scope["method"],
                        scope["path"][:200], (headers.get("origin") or
                                              headers.get("referer") or "")[:200])
            refuse = PlainTextResponse("跨站请求被拒绝 (cross-site request refused)", 403)
            await refuse(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)
