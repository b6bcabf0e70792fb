"""The FastAPI application: routers mounted on one Services instance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from server.alerting import live
from server.alerting.paging import Sender, apprise_send
from server.api import (
    ack,
    admin,
    alert_pages,
    fleet,
    json_api,
    login,
    monitoring,
    ponds,
    report,
    rollout,
)
from server.api.body_limit import BodyLimitMiddleware
from server.api.deps import ApiUser, LoginRequired, PageUser, ServerParts, admin_credentials
from server.api.security import (
    SecurityMiddleware,
    content_security_policy,
    tile_origins,
    warn_plain_http,
)
from server.core.clock import Clock
from server.core.config import ServerConfig
from server.services import Services

OPENAPI_URL = "/api/openapi.json"
STATIC = Path(__file__).parent / "static"


SWAGGER_CDN = "https://cdn.jsdelivr.net"  # where FastAPI's Swagger UI page loads itself from


def _docs(app: FastAPI) -> None:
    """API docs and schema for logged-in users only (none in production)."""
    if app.state.services.cfg.environment != "dev":
        return

    @app.get(OPENAPI_URL, include_in_schema=False)
    def openapi(_user: ApiUser) -> dict[str, Any]:
        """The OpenAPI schema."""
        return app.openapi()

    @app.get("/api/docs", include_in_schema=False, response_class=HTMLResponse)
    def docs(_user: PageUser) -> HTMLResponse:
        """Swagger UI over the schema (dev only: its own CSP lets its CDN script run)."""
        page = get_swagger_ui_html(openapi_url=OPENAPI_URL, title="PondWatch API")
        page.headers["content-security-policy"] = (
            f"default-src 'self' {SWAGGER_CDN}; script-src 'self' 'unsafe-inline' {SWAGGER_CDN}; "
            "img-src 'self' data: https://fastapi.tiangolo.com; frame-ancestors 'none'")
        return page


def create_app(services: Services) -> FastAPI:
    """The web app for already built services."""
    app = FastAPI(title="PondWatch", docs_url=None, redoc_url=None, openapi_url=None)
    parts: ServerParts = services  # mypy checks that Services gives routers what they use
    app.state.services = parts
    app.add_middleware(BodyLimitMiddleware, may_upload=admin_credentials)
    app.add_middleware(SecurityMiddleware, public_url=services.cfg.http.public_url,
                       csp=content_security_policy(tile_origins(services.cfg.map_tile_url)))
    warn_plain_http(services.cfg)
    app.state.live = live.Hub()
    live.attach(services.sessions, app.state.live)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (ack, alert_pages, ponds, fleet, admin, login, json_api, monitoring, report,
                   rollout):
        app.include_router(module.router)
    _docs(app)

    @app.exception_handler(LoginRequired)
    def _to_login(_request: Request, _exc: LoginRequired) -> Response:
        """HTML pages send strangers to the login form."""
        return RedirectResponse("/login", status_code=303)

    return app


def build(cfg: ServerConfig, clock: Clock | None = None,
          send: Sender = apprise_send) -> tuple[FastAPI, Services]:
    """The app and its services; call services.start() / .stop() around serving."""
    services = Services(cfg, clock, send)
    return create_app(services), services
