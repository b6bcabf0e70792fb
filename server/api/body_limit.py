"""Request bodies are bounded before anything reads them: MAX_BODY_BYTES for every route, and
a larger MAX_UPLOAD_BYTES only on the model upload and only once the request has shown an
admin's credentials, so a stranger never makes the server parse or spool a large body."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 2 * 1024 * 1024 + 64 * 1024  # a 2 MiB registry import and its form
MAX_UPLOAD_BYTES = 512 * 1024 * 1024           # a model file (tens of MB) and its form
LARGE_BODY_ROUTES = frozenset({("POST", "/api/models")})
TOO_LARGE = "请求过大 (request body too large)"


class BodyLimitMiddleware:
    """Answers 413 to a body over its limit: at once when Content-Length says so, else as
    soon as the streamed body passes it (the app sees the client gone)."""

    def __init__(self, app: ASGIApp, may_upload: Callable[[Request], bool]) -> None:
        """may_upload(request) says, from headers and cookies only, whether the request
        carries an admin's valid credentials (run in a worker thread)."""
        self.app = app
        self.may_upload = may_upload

    async def _limit(self, scope: Scope) -> int:
        """The limit for this request."""
        if (scope["method"], scope["path"]) in LARGE_BODY_ROUTES and \
                await anyio.to_thread.run_sync(self.may_upload, Request(scope)):
            return MAX_UPLOAD_BYTES
        return MAX_BODY_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count what arrives."""
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = await self._limit(scope)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, limit)
            return
        seen, over, started = 0, False, False

        async def counted() -> Message:
            """The next body chunk; past the limit, the client 'leaves'."""
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            """Pass the app's answer on, unless the body was cut: then ours goes."""
            nonlocal started
            if over:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._refuse(scope, receive, send, limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """The 413 answer, logged."""
        log.warning("refused a %s %r body over %d bytes", scope["method"],
                    scope["path"][:200], limit)
        await PlainTextResponse(TOO_LARGE, 413)(scope, receive, send)
