"""Runs the whole server (services + uvicorn) in-process: for the CLI, tests and the demo."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType, TracebackType

import uvicorn

from server.alerting.paging import Sender, apprise_send
from server.app import build
from server.core.clock import Clock
from server.core.config import ServerConfig
from server.core.errors import ServerError

log = logging.getLogger(__name__)


class ListenError(ServerError, RuntimeError):
    """The HTTP listener did not start (address in use, no permission, too slow)."""


class Server:
    """Services plus an HTTP listener on the configured bind address."""

    def __init__(self, cfg: ServerConfig, clock: Clock | None = None,
                 send: Sender = apprise_send) -> None:
        """Build the app; start() runs it in background threads."""
        self.cfg = cfg
        self.app, self.services = build(cfg, clock, send)
        self._uv = uvicorn.Server(uvicorn.Config(
            self.app, host=cfg.bind_host, port=cfg.bind_port, log_level="warning",
            access_log=False, lifespan="off", timeout_graceful_shutdown=2))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """http://host:port the listener serves."""
        return f"http://{self.cfg.bind_host}:{self.cfg.bind_port}"

    def start(self, timeout: float = 15.0) -> Server:
        """Start services and HTTP; return once HTTP accepts requests."""
        self.services.start()
        self._thread = threading.Thread(target=self._uv.run, name="uvicorn", daemon=True)
        self._thread.start()
        end = time.monotonic() + timeout
        while not self._uv.started:
            if time.monotonic() > end or not self._thread.is_alive():
                self.stop()
                raise ListenError(f"HTTP server did not start on {self.cfg.http.bind}")
            time.sleep(0.02)
        log.info("PondWatch server at %s", self.url)
        return self

    def serve_forever(self) -> int:
        """Serve until SIGTERM or SIGINT, then stop cleanly (0), or 1 if HTTP failed.

        uvicorn runs in a thread so it installs no signal handlers of its own (it would
        re-raise the signal after its shutdown and kill the process before ours)."""
        stop = threading.Event()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("%s received: stopping", signal.Signals(signum).name)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        self.start()
        code = 0
        try:
            while not stop.wait(0.5):
                if self._thread is None or not self._thread.is_alive():
                    log.error("the HTTP listener stopped; shutting down")
                    code = 1
                    break
        finally:
            began = time.monotonic()
            self.stop()
            log.info("stopped in %.1f s", time.monotonic() - began)
        return code

    def stop(self) -> None:
        """Stop HTTP and services; safe twice."""
        self.app.state.live.close()  # live streams end, so HTTP can finish at once
        self._uv.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.services.stop()

    def __enter__(self) -> Server:
        """Start; stop on leaving."""
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Stop."""
        self.stop()
