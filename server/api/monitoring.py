"""Monitoring: /healthz for liveness probes and Prometheus /metrics behind an optional token."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import func, select

from server.api.deps import Db, Svc
from server.core.db import Alert

router = APIRouter()


@router.get("/healthz")
def healthz(svc: Svc) -> dict[str, Any]:
    """Liveness: the web side answers even while the broker is away."""
    ing = svc.ingest
    return {"ok": True, "mqtt_connected": bool(ing and ing.connected.is_set()),
            "ingest_queue": ing.queue.qsize() if ing else 0}


def _check_metrics_token(request: Request, token: str | None) -> None:
    """401 unless the request carries the configured bearer token (none set: open)."""
    if token is None:
        return
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                             token.encode()):
        raise HTTPException(401, "bearer token required",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})


@router.get("/metrics")
def metrics(request: Request, svc: Svc, s: Db) -> Response:
    """Prometheus text exposition; needs `Authorization: Bearer TOKEN` when metrics_token
    is set."""
    _check_metrics_token(request, svc.metrics_token)
    open_n = s.scalar(select(func.count()).select_from(Alert).where(Alert.state != "resolved"))
    svc.metrics.open_alerts.set(open_n or 0)
    return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
