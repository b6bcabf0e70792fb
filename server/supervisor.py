"""Supervises the private loopback Mosquitto used when server.yaml names no broker."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from server.broker import BrokerError, Mosquitto, free_port
from server.metrics import Metrics

log = logging.getLogger(__name__)


class BrokerSupervisor:
    """Starts a private broker on a free loopback port and restarts it when it dies."""

    def __init__(self, data_dir: Path | None, metrics: Metrics, check_s: float = 1.0,
                 port: int | None = None) -> None:
        """Pick the port now so the URL is known before start()."""
        self.broker = Mosquitto(port=port or free_port(), data_dir=data_dir)
        self.metrics = metrics
        self.check_s = check_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """mqtt://127.0.0.1:PORT of the private broker."""
        return self.broker.url

    def start(self) -> None:
        """Start the broker and the watchdog thread."""
        self.broker.start()
        self._thread = threading.Thread(target=self._watch, name="broker-watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        """Restart the broker on the same port whenever it is not alive."""
        while not self._stop.wait(self.check_s):
            if self.broker.alive:
                continue
            log.error("private mosquitto died; restarting on port %d", self.broker.port)
            try:
                self.broker.stop()
                self.broker.start()
                self.metrics.broker_restarts.inc()
            except BrokerError as exc:
                log.error("mosquitto restart failed: %s", exc)

    def stop(self) -> None:
        """Stop the watchdog, then the broker."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.broker.close()
