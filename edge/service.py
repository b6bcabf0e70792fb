"""The node service: capture → newest frame → pipeline → local warning → outbox → MQTT."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.camera.sources import FrameSource, LatestFrameSlot, SourceError, is_live, open_source
from edge.config import NodeConfig
from edge.link.mqtt import NodeLink
from edge.link.outbox import Outbox
from edge.site.watch import SiteWatch
from protocol import Command, CommandResult, Event
from protocol.payloads import utc_now
from protocol.topics import requested_snapshot_id

log = logging.getLogger(__name__)

SENDER_STUCK_S = 60.0  # the outbox sender thread has not turned this long: stuck
EXIT_RESTART = 75  # systemd restarts the unit (Restart=always); a remote "restart" uses it


class NodeService:
    """Wires one node's parts together and owns its single stop event."""

    def __init__(self, cfg: NodeConfig, config_path: str, *, pin_factory: Any = None,
                 player: Any = None) -> None:
        """Open the outbox and the link, load the model and the local warning outputs."""
        from edge.ops.heartbeat import HealthCollector
        from edge.ops.remote import CommandHandler
        from edge.ops.sdnotify import Watchdog
        from edge.rules.pipeline import Pipeline
        from edge.vision.detector import load_detector
        from edge.warning.local import LocalWarning

        self.cfg = cfg
        self.config_path = config_path
        self.stop_event = threading.Event()
        self.exit_code = 0
        self.slot = LatestFrameSlot()
        self.outbox = Outbox(cfg.outbox,
                             snapshot_retention_s=cfg.snapshot_retention_days * 86400)
        self.warning = LocalWarning(cfg, pin_factory=pin_factory, player=player)
        self.warning.on_sos(self._sos)
        self.detector = load_detector(cfg.model)
        self.site = SiteWatch(cfg, config_path)
        self.pipeline = Pipeline(cfg, self.detector, empty_view=self.site.camera.reference)
        self.warning.on_pir(self.pipeline.wake)
        self.health = HealthCollector(cfg, config_path, Path(cfg.model.path).name)
        self._report_model()
        self.commands = CommandHandler(cfg, config_path, actions=self._actions())
        self.link = NodeLink(cfg, self.outbox, on_command=self.commands.handle)
        self.source: FrameSource | None = None
        self.capture_done = threading.Event()
        self.camera_state = "starting"
        self.last_frame_at = time.monotonic()
        self.watchdog = Watchdog()
        self._emit_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # --- events ----------------------------------------------------------------------------

    def emit(self, event: Event, snapshot: bytes | None = None,
             frame: bytes | None = None) -> None:
        """Warn on the spot first, then store durably, then send."""
        self.warning.on_event(event)
        with self._emit_lock:
            self.outbox.put(event, snapshot, frame=frame)
        self.link.wake()
        log.info("event %s %s track=%s zone=%s", event.type, event.id, event.track_id, event.zone)

    def _sos(self) -> None:
        """The SOS button was pressed."""
        self.emit(Event.make("sos", self.cfg.node_id, self.cfg.pond_id, reason="button"))

    # --- capture ---------------------------------------------------------------------------

    def _capture(self) -> None:
        """Read frames into the newest-frame slot; a file plays once at its own frame rate."""
        assert self.source is not None
        live = is_live(self.cfg.camera.source)
        start = time.monotonic()
        while not self.stop_event.is_set():
            got = self.source.read()
            self.camera_state = self.source.state
            if got is None:
                if not live:
                    break
                continue
            frame, t = got
            if not live:
                delay = start + t - time.monotonic()
                if delay > 0 and self.stop_event.wait(delay):
                    break
            self.slot.put(frame, t)
        self.capture_done.set()

    # --- main loop -------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped (or a file source ends and the outbox drains); the exit code."""
        try:
            self.source = open_source(self.cfg.camera.source, self.cfg.camera.fps,
                                      width=self.cfg.camera.width, height=self.cfg.camera.height,
                                      stall_s=self.cfg.camera.stall_s)
        except SourceError as exc:
            log.error("%s", exc)
            return 1
        from edge.ops import sdnotify
        self.link.start()
        self._spawn(self._capture, "capture")
        if self.cfg.sms.enabled:
            from edge.link.sms import SmsFallback

            sms = SmsFallback(self.cfg, self.outbox)
            self._spawn(lambda: sms.run(self.stop_event), "sms-fallback")
        sdnotify.ready()
        next_health = time.monotonic() + 5.0
        try:
            while not self.stop_event.is_set():
                got = self.slot.take(timeout=0.5)
                wall = datetime.now(UTC)
                if got is not None:
                    frame, t = got
                    self.last_frame_at = time.monotonic()
                    for em in self.pipeline.process(frame, t, wall):
                        self.emit(em.event, em.snapshot, em.frame)
                    for ev in self.site.check(frame, t, wall, self.pipeline.last_detections):
                        self.emit(ev)
                elif self.capture_done.is_set():
                    break
                elif is_live(self.cfg.camera.source):
                    for ev in self.site.check(None, time.monotonic(), wall):
                        self.emit(ev)
                if time.monotonic() >= next_health:
                    next_health = time.monotonic() + self.cfg.health.interval_s
                    self._publish_health()
                self.warning.set_status(self._status())
                self.watchdog.ping_if(self.healthy())
            if not self.stop_event.is_set():
                self._drain()
        finally:
            self.close()
        return self.exit_code

    def _drain(self) -> None:
        """After a file source ends: wait until the server confirmed every event."""
        log.info("source ended; waiting for the outbox to drain (%d)", self.outbox.depth())
        while not self.stop_event.is_set() and self.outbox.depth() > 0:
            self.link.wake()
            self.stop_event.wait(0.2)
        log.info("outbox drained")

    def _spawn(self, target: Any, name: str) -> None:
        """Start a daemon thread that close() joins."""
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def healthy(self, now: float | None = None) -> bool:
        """Frames flow and the outbox sender turns: only then may the watchdog be pinged.

        The main loop itself calls this, so a hung detector stops the pings too. An absent
        server or broker is not the node's fault: a restart would not help, so it does not
        count (the outbox keeps the events and the SMS fallback covers critical ones).
        """
        now = time.monotonic() if now is None else now
        if now - self.last_frame_at > self.cfg.camera.stall_s * 3:
            return False
        return now - self.link.loop_at <= SENDER_STUCK_S

    def _status(self) -> str:
        """ok, no_broker or camera_fault for the status LED."""
        if self.camera_state not in ("ok", "starting") or not self.site.vouching:
            return "camera_fault"
        return "ok" if self.link.connected.is_set() else "no_broker"

    def stats(self) -> dict[str, Any]:
        """Figures for the heartbeat."""
        st = self.pipeline.stats
        return {
            "fps": st.fps,
            "inference_ms": st.last_inference_ms,
            "camera": self.camera_state if self.site.vouching else self.site.camera.state(),
            "equipment": self.site.kit.state(),
            "vouching": self.site.vouching,
            "outbox_depth": self.outbox.depth(),
            "link_error": self.link.last_error,
            "warning_faults": list(self.warning.faults),
            "interval_s": self.cfg.health.interval_s,
            "refused_publishes": self.link.refused,
        }

    def _publish_health(self) -> None:
        """Send one heartbeat; a failure here never stops detection."""
        try:
            self.link.publish_health(self.health.collect(self.stats()))
        except Exception:  # health must never stop detection
            log.exception("health collection failed")

    # --- remote commands -------------------------------------------------------------------

    def _actions(self) -> dict[str, Any]:
        """The remote commands this service adds to the built-in ones."""
        return {
            "horn_test": self._horn_test,
            "snapshot": self._snapshot_now,
            "enrol": self._re_enrol,
            "restart": self._restart,
            "model_update": self._model_update,
        }

    def _horn_test(self, args: dict[str, Any]) -> str:
        """Sound horn and light briefly (remote horn test)."""
        self.warning.test(float(args.get("seconds", 2.0)))
        return "ok"

    def _snapshot_now(self, args: dict[str, Any]) -> dict[str, Any]:
        """Publish the newest frame on the snapshot topic as a whole JPEG within the wire
        limit (lower quality, then smaller, as an event's snapshot)."""
        from edge.vision.snapshot import encode_jpeg

        got = self.slot.peek()
        if got is None:
            raise RuntimeError("no frame yet")
        jpeg = encode_jpeg(got[0])
        event_id = requested_snapshot_id()
        self.link.client.publish(self.link.topics.snapshot(self.cfg.node_id, event_id),
                                 jpeg, qos=1)
        return {"snapshot_id": event_id, "bytes": len(jpeg)}

    def _re_enrol(self, args: dict[str, Any]) -> str:
        """Re-enrol the rescue kit from the live view (median of frames a second apart)."""
        from edge.site.enrol import enrol_frames

        shots: list[Any] = []
        for _ in range(int(args.get("frames", 9))):
            got = self.slot.peek()
            if got is not None:
                shots.append(got[0])
            if self.stop_event.wait(float(args.get("every_s", 1.0))):
                break
        message = enrol_frames(self.cfg, self.config_path, shots, "live view")
        self.site = SiteWatch(self.cfg, self.config_path)
        self.pipeline.background.view = self.site.camera.reference
        return message

    def _report_model(self) -> None:
        """Tell the heartbeat which model runs: manifest name, format and sha256."""
        from edge.model.store import describe

        try:
            ident = describe(self.cfg.model.path)
        except OSError as exc:
            log.warning("cannot identify model %s: %s", self.cfg.model.path, exc)
            return
        self.health.set_model(ident.name or Path(self.cfg.model.path).name, ident.format,
                              ident.sha256)

    def _model_update(self, args: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """Switch to the model the server assigned (edge/model/deploy.py), or roll back."""
        from edge.model.deploy import ModelDeployer
        from edge.vision.detector import load_detector
        from edge.vision.types import Detector

        def swap(new: Detector) -> Detector:
            old, self.detector = self.detector, new
            self.pipeline.detector = new
            return old

        deployer = ModelDeployer(
            self.cfg, load=lambda path: load_detector(self.cfg.model.model_copy(
                update={"path": path})),
            swap=swap, selftest=lambda: self.commands.handle_selftest({}),
            on_switched=lambda _ident: self._report_model())
        return deployer.handle(args)

    def _restart(self, args: dict[str, Any]) -> str:
        """Exit with EXIT_RESTART shortly so systemd starts the node afresh."""
        self.exit_code = EXIT_RESTART
        threading.Timer(1.0, self.stop_event.set).start()
        return "restarting"

    def handle_command(self, cmd: Command) -> CommandResult | None:
        """Run one remote command (used by tests without a broker)."""
        return self.commands.handle(cmd)

    def close(self) -> None:
        """Stop everything; safe to call twice."""
        from edge.ops import sdnotify
        sdnotify.stopping()
        self.stop_event.set()
        if self.source is not None:
            self.source.close()
        self.link.stop()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()
        self.warning.close()
        self.outbox.close()


def run_service(cfg: NodeConfig, config_path: str) -> int:
    """pondwatch-edge run: the node until SIGTERM/SIGINT, or until a file source is done."""
    service = NodeService(cfg, config_path)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: service.stop_event.set())
    log.info("node %s watching pond %s (pid %d, at %s)", cfg.node_id, cfg.pond_id, os.getpid(),
             utc_now().isoformat())
    return service.run()
