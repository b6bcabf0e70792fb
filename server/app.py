"""The FastAPI application: routers mounted on one Services instance."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from server.api import ack, api, report, web
from server.api.deps import LoginRequired
from server.clock import Clock
from server.config import ServerConfig
from server.paging import Sender, apprise_send
from server.services import Services


def create_app(services: Services) -> FastAPI:
    """The web app for already built services."""
    app = FastAPI(title="PondWatch", docs_url="/api/docs", redoc_url=None)
    app.state.services = services
    for r in (ack.router, web.router, api.router, report.router):
        app.include_router(r)

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
