"""The node's MQTT v5 link: publishes the outbox, forgets only what the server confirms."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge import __version__
from edge.config import NodeConfig
from edge.link.client import RECONNECT_MAX_S, NodeClient, broker_address, make_client
from edge.link.outbox import Outbox
from protocol import (
    MAX_CMD_BYTES,
    Ack,
    Command,
    CommandResult,
    Health,
    PayloadError,
    Status,
    Topics,
    decode,
    encode,
)
from protocol.payloads import utc_now

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 24 * 3600
CRITICAL_RECONNECT_S = 1.0  # retry this often while a critical event waits (issue: <= 2 s)
WAIT_SLICE_S = 0.2  # the reconnect wait looks for a critical event this often
NOT_AUTHORIZED = 0x87
NO_MATCHING_SUBSCRIBERS = 0x10

CommandHook = Callable[[Command], CommandResult | None]


class NodeLink:
    """Owns the paho client and a sender thread that drains the outbox."""

    def __init__(self, cfg: NodeConfig, outbox: Outbox, on_command: CommandHook | None = None,
                 clock: Callable[[], float] = time.time, *,
                 timer: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] | None = None) -> None:
        """Prepare the client; call start() to connect. clock stamps the outbox (epoch
        seconds); the reconnect wait runs on timer and sleep (default: a wait on the stop
        event, so stop() ends it at once)."""
        self.cfg = cfg
        self.outbox = outbox
        self.topics = Topics(cfg.mqtt.topic_prefix)
        self.node = cfg.node_id
        self.on_command = on_command
        self.clock = clock
        self.connected = threading.Event()
        self.loop_at = time.monotonic()  # the sender thread's last turn (for the watchdog)
        self.refused = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._timer = timer
        self._sleep = sleep or self._stop.wait
        self._wake = threading.Event()
        self._acks: queue.Queue[list[str]] = queue.Queue(maxsize=1000)
        self._cmds: queue.Queue[bytes] = queue.Queue(maxsize=100)
        self._pending: dict[int, str] = {}
        self._pending_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._backoff = 0.0  # seconds of the last reconnect wait; 0 after a connect
        self.client = self._make_client()

    def _make_client(self) -> NodeClient:
        """The paho client of edge.link.client, with the Last Will, the link's reconnect
        wait and callbacks."""
        c = make_client(self.cfg, f"pondwatch-node-{self.node}", "edge.link.mqtt.paho")
        c.wait_hook = self._reconnect_wait
        c.will_set(self.topics.status(self.node), self._status("offline"), qos=1, retain=True)
        c.max_inflight_messages_set(20)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.message_callback_add(self.topics.ack(self.node), self._on_ack)
        c.message_callback_add(self.topics.cmd(self.node), self._on_cmd)
        return c

    def _status(self, state: str, reason: str | None = None) -> bytes:
        """A status payload for state (reason 'planned' on a clean stop)."""
        return encode(Status(state=state, ts=utc_now(), version=__version__, reason=reason))

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background and start the sender and command threads."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        host, port = broker_address(self.cfg)
        self.client.connect_async(host, port,
                                  keepalive=self.cfg.mqtt.keepalive_s, clean_start=False,
                                  properties=props)
        self.client.loop_start()
        for target, name in ((self._send_loop, "outbox-sender"), (self._cmd_loop, "commands")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 3.0) -> None:
        """Publish offline (reason planned), disconnect cleanly and join threads; safe twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        if self.connected.is_set():
            info = self.client.publish(self.topics.status(self.node),
                                       self._status("offline", "planned"), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
            self.client.disconnect()
        self.client.loop_stop()
        for t in self._threads:
            t.join(timeout)

    def wake(self) -> None:
        """A new event is in the outbox: send it now."""
        self._wake.set()

    def reconnect_delay(self) -> float:
        """The next wait before retrying the broker: doubling up to RECONNECT_MAX_S, but
        CRITICAL_RECONNECT_S while a critical event waits in the outbox."""
        if self.outbox.has_critical():
            return CRITICAL_RECONNECT_S
        return min(RECONNECT_MAX_S, max(1.0, self._backoff * 2))

    def _reconnect_wait(self, ending: Callable[[], bool]) -> None:
        """paho's network thread between attempts: wait reconnect_delay() of the link's timer
        in slices, and cut a long wait short once a critical event is waiting."""
        self._backoff = delay = self.reconnect_delay()
        began = self._timer()
        while not ending() and not self._stop.is_set():
            waited = self._timer() - began
            if waited >= delay or (waited >= CRITICAL_RECONNECT_S and delay > CRITICAL_RECONNECT_S
                                   and self.outbox.has_critical()):
                return
            self._sleep(min(WAIT_SLICE_S, delay - waited))

    # --- paho callbacks: only hand off -----------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        """Subscribe, announce online and re-send the outbox; a refusal is only logged."""
        if rc.is_failure:
            self.last_error = f"connect refused: {rc}"
            log.error("broker refused connection: %s", rc)
            return
        log.info("connected to broker (session present: %s)", flags.session_present)
        client.subscribe([(self.topics.ack(self.node), 1), (self.topics.cmd(self.node), 1)])
        client.publish(self.topics.status(self.node), self._status("online"), qos=1, retain=True)
        self.last_error = None
        self._backoff = 0.0
        self.connected.set()
        self.outbox.retry_now()
        self._wake.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        """Forget in-flight publishes; the outbox still holds them."""
        self.connected.clear()
        with self._pending_lock:
            self._pending.clear()
        if not self._stop.is_set():
            self.last_error = f"disconnected: {rc}"
            log.warning("disconnected from broker: %s", rc)

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        """Note refused (0x87) and failed publishes; success waits for the server ack."""
        with self._pending_lock:
            event_id = self._pending.pop(mid, None)
        if rc.value == NOT_AUTHORIZED:
            self.refused += 1
            self.last_error = "publish refused by broker: not authorized (0x87)"
            log.error("broker refused publish of %s: not authorized (0x87)", event_id or mid)
        elif rc.is_failure:
            self.last_error = f"publish failed: {rc}"
            log.error("publish of %s failed: %s", event_id or mid, rc)
        elif rc.value == NO_MATCHING_SUBSCRIBERS and event_id:
            log.warning("event %s reached the broker but nobody subscribed; will re-send", event_id)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        """Log a message on a topic nobody handles."""
        log.warning("unexpected message on %s", msg.topic)

    def _on_ack(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        """Hand the server's committed ids to the sender thread."""
        try:
            ack = decode(Ack, bytes(msg.payload))
        except PayloadError as exc:
            log.error("bad ack payload: %s", exc)
            return
        try:
            self._acks.put_nowait(ack.ids)
        except queue.Full:
            log.error("ack queue full; ids will be confirmed on the next re-send")
        self._wake.set()

    def _on_cmd(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        """Hand a command to the command thread."""
        try:
            self._cmds.put_nowait(bytes(msg.payload))
        except queue.Full:
            log.error("command queue full; dropping a command")

    # --- worker threads --------------------------------------------------------------------

    def _drain_acks(self) -> None:
        """Delete every event the server has confirmed."""
        while True:
            try:
                ids = self._acks.get_nowait()
            except queue.Empty:
                return
            n = self.outbox.confirm(ids)
            log.debug("server confirmed %d event(s), %d removed", len(ids), n)

    def _send_loop(self) -> None:
        """Publish due outbox events while connected; confirm acked ones."""
        while not self._stop.is_set():
            self.loop_at = time.monotonic()
            self._wake.wait(0.5)
            self._wake.clear()
            self._drain_acks()
            if not self.connected.is_set():
                continue
            for item in self.outbox.due(self.clock(), limit=20):
                if not self._publish_item(item.id, item.event, item.snapshot, item.frame):
                    break

    def _publish_item(self, event_id: str, event: dict[str, Any], snapshot: bytes | None,
                      frame: bytes | None = None) -> bool:
        """Publish one event (its snapshot and unannotated frame first); False when the client
        cannot send now."""
        if snapshot:
            self.client.publish(self.topics.snapshot(self.node, event_id), snapshot, qos=1)
        if frame:
            self.client.publish(self.topics.frame(self.node, event_id), frame, qos=1)
        info = self.client.publish(self.topics.event(self.node),
                                   json.dumps(event, ensure_ascii=False).encode(), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.debug("publish of %s not possible now (rc %s)", event_id, info.rc)
            return False
        with self._pending_lock:
            self._pending[info.mid] = event_id
        self.outbox.mark_sent(event_id, self.clock())
        return True

    def _cmd_loop(self) -> None:
        """Run commands one at a time off the network thread."""
        while not self._stop.is_set():
            try:
                payload = self._cmds.get(timeout=0.5)
            except queue.Empty:
                continue
            self._run_command(payload)

    def _run_command(self, payload: bytes) -> None:
        """Decode, run and answer one command; a failing one answers ok=false."""
        try:
            cmd = decode(Command, payload, limit=MAX_CMD_BYTES)
        except PayloadError as exc:
            log.error("bad command: %s", exc)
            return
        if self.on_command is None:
            result: CommandResult | None = CommandResult(
                id=cmd.id, ok=False, result="no command handler", ts=utc_now())
        else:
            try:
                result = self.on_command(cmd)
            except Exception as exc:  # a failing command must not kill the link
                log.exception("command %s failed", cmd.cmd)
                result = CommandResult(id=cmd.id, ok=False, result=str(exc), ts=utc_now())
        if result is not None:
            self.client.publish(self.topics.cmd_result(self.node), encode(result), qos=1)

    # --- other publishes -------------------------------------------------------------------

    def publish_health(self, health: Health) -> None:
        """Send a heartbeat (QoS 0: the next one replaces a lost one)."""
        if self.connected.is_set():
            self.client.publish(self.topics.health(self.node), encode(health), qos=0)
