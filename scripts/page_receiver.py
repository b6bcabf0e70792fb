"""A local HTTP receiver for Apprise json:// pages (demo and tests): records every POST."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class PageReceiver:
    """A real HTTP server on 127.0.0.1 keeping each page's JSON body, path and arrival time."""

    def __init__(self, delay_s: float = 0.0, status: int = 200,
                 hold: threading.Event | None = None) -> None:
        """Listen on a free loopback port; optionally answer slowly, only once hold is set
        (at most 60 s), or with an error status."""
        self.pages: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.times: list[float] = []      # time.monotonic() at arrival
        self.received: list[float] = []   # time.time() at arrival (to compare with event ts)
        self.delay_s, self.status, self.hold = delay_s, status, hold
        self.waiting = 0                  # POSTs held back by hold right now
        self._cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                if outer.hold is not None:
                    with outer._cond:
                        outer.waiting += 1
                        outer._cond.notify_all()
                    outer.hold.wait(60)
                    with outer._cond:
                        outer.waiting -= 1
                try:
                    page = json.loads(body or b"{}")
                except json.JSONDecodeError:
                    page = {"raw": body.decode(errors="replace")}
                with outer._cond:
                    outer.pages.append(page)
                    outer.paths.append(self.path)
                    outer.times.append(time.monotonic())
                    outer.received.append(time.time())
                    outer._cond.notify_all()
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *_a: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "page") -> str:
        """The Apprise json:// URL that posts to /path here."""
        return f"json://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def wait(self, n: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until n pages arrived; return them, or raise AssertionError on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.pages) >= n, timeout):
                raise AssertionError(f"expected {n} pages, got {len(self.pages)}")
            return list(self.pages)

    def for_path(self, path: str) -> list[dict[str, Any]]:
        """Pages posted to one path (one path per person)."""
        with self._cond:
            return [p for p, q in zip(self.pages, self.paths, strict=True)
                    if q == f"/{path.lstrip('/')}"]

    def close(self) -> None:
        """Stop listening; safe to call twice."""
        self.httpd.shutdown()
        self.httpd.server_close()
