"""A local HTTP receiver for Apprise json:// pages (demo and tests): records every POST."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class PageReceiver:
    """Listens on 127.0.0.1 and keeps each page's JSON body with its arrival time."""

    def __init__(self, status: int = 200, delay_s: float = 0.0) -> None:
        """Start listening on a free port; status and delay_s shape the answer."""
        self.pages: list[dict[str, Any]] = []
        self.status = status
        self.delay_s = delay_s
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    page = json.loads(body or b"{}")
                except json.JSONDecodeError:
                    page = {"raw": body.decode(errors="replace")}
                page["_path"] = self.path
                page["_received"] = time.time()
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                with receiver._cond:
                    receiver.pages.append(page)
                    receiver._cond.notify_all()
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/page") -> str:
        """The Apprise json:// URL that posts here."""
        return f"json://127.0.0.1:{self.port}{path}"

    def wait(self, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Block until at least count pages arrived; raise TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.pages) >= count, timeout):
                raise TimeoutError(f"{len(self.pages)} page(s) after {timeout} s, wanted {count}")
            return list(self.pages)

    def close(self) -> None:
        """Stop the server; safe to call twice."""
        self._httpd.shutdown()
        self._httpd.server_close()
