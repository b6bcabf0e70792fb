"""The systemd watchdog is pinged only while frames flow and the node's threads turn."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from edge.config import load_config
from edge.service import NodeService
from tests.support import wait_for


class MjpegCamera:
    """An HTTP MJPEG camera on loopback that a test can freeze (connections stay open, silent)."""

    def __init__(self, frame: np.ndarray) -> None:
        ok, jpeg = cv2.imencode(".jpg", frame)
        assert ok
        self.jpeg = jpeg.tobytes()
        self.stalled = threading.Event()
        self.closing = threading.Event()
        cam = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not cam.closing.is_set():
                        if cam.stalled.is_set():
                            time.sleep(0.05)
                            continue
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                         + f"Content-Length: {len(cam.jpeg)}\r\n\r\n".encode()
                                         + cam.jpeg + b"\r\n")
                        time.sleep(0.1)
                except OSError:
                    return

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class NotifyListener:
    """Stands in for systemd's NOTIFY_SOCKET and records each message with its time."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.path = path
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def pings(self, since: float = 0.0) -> list[float]:
        return [t for t, m in self.messages if "WATCHDOG=1" in m and t >= since]

    def close(self) -> None:
        self._stop.set()
        self.sock.close()



@pytest.fixture
def node(scenes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
         ) -> Iterator[tuple[NodeService, MjpegCamera, NotifyListener]]:
    """A node on a live HTTP camera, under a (fake) systemd watchdog of 1 s."""
    raw = yaml.safe_load((scenes_dir / "empty_static.yaml").read_text())
    raw["model"]["path"] = str((scenes_dir / raw["model"]["path"]).resolve())
    cap = cv2.VideoCapture(str(scenes_dir / "empty_static.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok
    cam = MjpegCamera(frame)
    raw["camera"] = {"source": cam.url, "fps": 5, "stall_s": 1.0}
    raw["mqtt"] = {"url": "mqtt://127.0.0.1:1"}  # no broker: must not matter to the watchdog
    raw["outbox"] = str(tmp_path / "outbox.db")
    raw["equipment"] = []
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(raw))
    listener = NotifyListener(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(listener.path))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    svc = NodeService(load_config(path), str(path))
    runner = threading.Thread(target=svc.run, daemon=True)
    runner.start()
    yield svc, cam, listener
    svc.stop_event.set()
    cam.close()
    runner.join(20)
    listener.close()


def test_pings_stop_while_the_camera_stalls_and_resume_when_it_returns(node: Any) -> None:
    svc, cam, listener = node
    wait_for(lambda: any("READY=1" in m for _, m in listener.messages), 60, "READY=1")
    wait_for(lambda: len(listener.pings()) >= 3, 30, "watchdog pings while frames flow")
    cam.stalled.set()
    # Once no frame came for 3 x stall_s, every loop turn (0.5 s) withholds the ping; a healthy
    # turn would reset the count, so a count of 8 is 4 s of turns without a ping.
    wait_for(lambda: svc.watchdog.withheld >= 1, 60, "the node noticing the stall")
    sent = svc.watchdog.pings
    wait_for(lambda: svc.watchdog.withheld >= 8, 60, "pings withheld turn after turn")
    assert svc.watchdog.pings == sent, "no ping while no frame arrives"
    wait_for(lambda: len(listener.pings()) == sent, 10, "the listener to have every ping sent")
    resumed_at = time.monotonic()
    cam.stalled.clear()
    wait_for(lambda: len(listener.pings(since=resumed_at)) >= 2, 30, "pings after recovery")


def test_pings_stop_when_the_detector_hangs(node: Any) -> None:
    svc, _, listener = node
    wait_for(lambda: len(listener.pings()) >= 3, 60, "watchdog pings while frames flow")
    hang = threading.Event()
    release = threading.Event()
    real = svc.pipeline.process

    entered = threading.Event()

    def stuck(*args: Any, **kwargs: Any) -> Any:
        if hang.is_set():
            entered.set()
            release.wait(30)
        return real(*args, **kwargs)
    svc.pipeline.process = stuck  # type: ignore[method-assign]
    hang.set()
    try:
        wait_for(entered.is_set, 60, "the detector to hang")
        sent = svc.watchdog.pings
        wait_for(lambda: len(listener.pings()) == sent, 10, "the pings sent before the hang")
        # A negative proof needs time to pass: 8 ping intervals (0.5 s) in which nothing pings.
        began = time.monotonic()
        wait_for(lambda: time.monotonic() > began + 4.0, 15, "a quiet window")
        assert len(listener.pings()) == sent, "a hung detector stops the pings"
    finally:
        release.set()
