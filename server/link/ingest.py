"""MQTT ingest: persistent v5 session, bounded hand-off, commit, then ack to broker and node."""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from protocol.limits import MAX_CMD_BYTES, MAX_EVENT_BYTES, MAX_HEALTH_BYTES, MAX_SNAPSHOT_BYTES
from protocol.payloads import (
    Ack,
    CommandResult,
    Event,
    Health,
    PayloadError,
    Status,
    decode,
    encode,
)
from protocol.topics import Topic, TopicError, Topics, frame_of
from server.alerting import alerts
from server.core.clock import Clock
from server.core.config import ServerConfig
from server.core.db import Alert, EquipmentState, EventFrame, EventRow, Node, Snapshot
from server.core.errors import ServerError
from server.core.metrics import Metrics
from server.fleet import health, node_watch
from server.link import commands
from server.link.client import connect_in_background, make_client, replica_client_id
from server.link.throttle import NodeThrottle

log = logging.getLogger(__name__)
TOPIC_LOG_MAX = 200  # topics are logged with %r and cut here (no log injection)
_SUBSCRIBE_KINDS = ("event", "status", "health", "snapshot/+", "cmd/result")
# Hand-off lanes: events are written before anything queued ahead of them (a backlog of
# heartbeats after a restart must not delay a page); each lane keeps its arrival order.
URGENT, NORMAL = 0, 1
BATCH = 200
# Size limits are protocol/limits.py's; these two have no name there yet:
STATUS_MAX_BYTES = 1024  # a Status is four short fields (a few hundred bytes at most)
ACK_MAX_IDS = 1000  # protocol.payloads.Ack.ids' max_length: acks go out in chunks of this


class Rejected(ServerError, ValueError):
    """A message the server will not store; carries the counter reason."""

    def __init__(self, reason: str, detail: str) -> None:
        """Keep the reason label and a human detail."""
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Inbound:
    """One MQTT message handed from the network thread to the writer."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    node: str = ""  # the node the topic names, as the throttle counted it


@dataclass
class Outcome:
    """What processing one message produced: an event id to confirm, an alert touched."""

    node_id: str | None = None
    event_id: str | None = None
    alert_id: int | None = None
    new_alert: bool = False


def _decode(model: type[Any], payload: bytes, limit: int) -> Any:
    """decode() with the failure turned into a counted rejection reason."""
    if len(payload) > limit:
        raise Rejected("oversized", f"{len(payload)} bytes > {limit}")
    try:
        return decode(model, payload, limit)
    except PayloadError as exc:
        text = str(exc)
        reason = ("nested" if "nests deeper" in text else
                  "not_json" if "not JSON" in text or "JSON object" in text else "schema")
        raise Rejected(reason, text) from exc


class Ingestor:
    """Receives node messages, writes them, and confirms them only after the commit."""

    def __init__(self, cfg: ServerConfig, sessions: sessionmaker[Session], clock: Clock,
                 metrics: Metrics, broker_url: str, on_alert: Callable[[], None] = lambda: None,
                 login: tuple[str, str, str] | None = None) -> None:
        """Prepare the client and the writer thread (start() runs them); login is the
        (client id, username, password) of the private broker."""
        self.cfg, self.sessions, self.clock, self.metrics = cfg, sessions, clock, metrics
        self.topics = Topics(cfg.mqtt.topic_prefix)
        self.broker_url = broker_url
        self.on_alert = on_alert
        self.login = login
        self.client_id = login[0] if login else replica_client_id(cfg.mqtt)
        self.queue: queue.PriorityQueue[tuple[int, int, Inbound]] = queue.PriorityQueue(
            maxsize=cfg.ingest_queue)
        self._seq = itertools.count()
        self.throttle = NodeThrottle(cfg.ingest_queue, clock=lambda: clock.now().timestamp())
        self._warned: dict[str, float] = {}
        self._carry: tuple[int, int, Inbound] | None = None
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.client = self._make_client()

    # --- MQTT side (network thread: only hand off) ---------------------------------------
    def _make_client(self) -> mqtt.Client:
        """The factory's client with manual acks and this ingest's callbacks."""
        c = make_client(self.cfg.mqtt, self.broker_url, self.client_id,
                        self.login[1:] if self.login else None, f"{__name__}.paho")
        c.manual_ack_set(True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        return c

    def _on_connect(self, client: mqtt.Client, _ud: Any, flags: Any, rc: Any, _p: Any) -> None:
        """Subscribe on every (re)connect; `connected` is set once the broker confirms."""
        if rc.is_failure:
            log.warning("broker refused connection: %s", rc)
            return
        log.info("connected to %s (session present: %s)", self.broker_url, flags.session_present)
        opts = SubscribeOptions(qos=1, noLocal=True)
        subs = []
        for kind in _SUBSCRIBE_KINDS:
            topic = self.topics.all_nodes(kind)
            if self.cfg.mqtt.shared_group:
                topic = f"$share/{self.cfg.mqtt.shared_group}/{topic}"
            subs.append((topic, opts))
        client.subscribe(subs)

    def _on_subscribe(self, _c: mqtt.Client, _ud: Any, _mid: int, codes: list[Any],
                      _p: Any) -> None:
        """Only now are node messages routed to us: report connected."""
        bad = [c for c in codes if c.is_failure]
        if bad:
            log.error("broker refused %d of our subscriptions: %s", len(bad), bad)
        self.connected.set()
        self.metrics.mqtt_connected.set(1)

    def _on_disconnect(self, _c: mqtt.Client, _ud: Any, _f: Any, rc: Any, _p: Any) -> None:
        """Note the loss; paho reconnects with backoff by itself."""
        self.connected.clear()
        self.metrics.mqtt_connected.set(0)
        if not self._stop.is_set():
            log.warning("disconnected from broker: %s; reconnecting", rc)

    def _on_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        """Hand the message to the writer; never touch the database here."""
        if self._stop.is_set():
            return  # stopping: left unacknowledged, the broker redelivers it
        node = self._node_of(msg.topic)
        if not self.throttle.admit(node):
            self._throttled(node, msg)
            return
        lane = URGENT if msg.topic.endswith("/event") else NORMAL
        item = (lane, next(self._seq),
                Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos, node))
        if msg.qos == 0:
            try:
                self.queue.put_nowait(item)
            except queue.Full:
                self.throttle.done(node)
                self.metrics.rejected.labels("queue_full").inc()
            return
        # QoS 1: the broker sends at most receive_maximum unacknowledged messages, so this
        # put waits only when the queue is smaller than that window.
        self.queue.put(item)

    def _node_of(self, topic: str) -> str:
        """The node a topic names, or "" for a foreign topic (rejected later)."""
        try:
            return self.topics.parse(topic).node_id
        except TopicError:
            return ""

    def _throttled(self, node: str, msg: mqtt.MQTTMessage) -> None:
        """Drop a message of a node over its rate or queue share: acknowledged to the broker
        (else it comes straight back), never to the node, whose outbox sends events again."""
        self.metrics.rejected.labels("rate_limited").inc()
        if msg.qos > 0:
            self.client.ack(msg.mid, msg.qos)
        now = self.clock.now().timestamp()
        if now - self._warned.get(node, 0.0) >= 60:
            if len(self._warned) > 10_000:
                self._warned.clear()
            self._warned[node] = now
            log.warning("node %r sends faster than %.0f messages/s: dropping its messages",
                        node[:TOPIC_LOG_MAX], self.throttle.rate)

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer and connect in the background, retrying a broker that is not up."""
        self._worker = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._worker.start()
        connect_in_background(self.client, self.broker_url, self.session_expiry_s(),
                              self.cfg.mqtt.receive_maximum)

    def session_expiry_s(self) -> int:
        """The configured session expiry; 0 by default for a replica in a shared group,
        since a dead replica's session would keep its share of the messages (nodes re-send
        what no server confirmed)."""
        mq = self.cfg.mqtt
        if mq.shared_group and "session_expiry_s" not in mq.model_fields_set:
            return 0
        return mq.session_expiry_s

    def stop(self) -> None:
        """Commit and confirm the batch being written, then disconnect keeping the broker
        session: messages still queued are unacknowledged, so the broker redelivers them."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=10)
        while not self.queue.empty():  # unblock the network thread; these stay unacked
            self.throttle.done(self.queue.get_nowait()[2].node)
        self.client.disconnect()
        self.client.loop_stop()
        self.metrics.mqtt_connected.set(0)

    # --- writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        """Take batches off the queue, commit each message, then confirm."""
        while not self._stop.is_set():
            batch = self.take_batch(0.2)
            if batch:
                self.metrics.queue_depth.set(self.queue.qsize())
                self.handle_batch(batch)

    def take_batch(self, timeout: float) -> list[Inbound]:
        """Up to BATCH queued messages of one lane, events first, each lane in arrival
        order; a message of the other lane waits for the next batch. Empty after timeout."""
        first = self._carry
        self._carry = None
        if first is None:
            try:
                first = self.queue.get(timeout=timeout)
            except queue.Empty:
                return []
        batch = [first[2]]
        while len(batch) < BATCH:
            try:
                nxt = self.queue.get_nowait()
            except queue.Empty:
                break
            if nxt[0] != first[0]:
                self._carry = nxt  # an event came in behind a heartbeat batch: it goes next
                break
            batch.append(nxt[2])
        for item in batch:
            self.throttle.done(item.node)
        return batch

    def handle_batch(self, batch: list[Inbound]) -> list[Outcome]:
        """Commit the batch, then MQTT-ack every message and publish the node acks."""
        outcomes = self._commit_batch(batch)
        acks: dict[str, list[str]] = defaultdict(list)
        new_alert = False
        for out in outcomes:
            if out is None:
                continue  # stopping with the DB down: leave unacked, the broker redelivers
            if out.event_id and out.node_id:
                acks[out.node_id].append(out.event_id)
            new_alert = new_alert or out.new_alert
        if new_alert:
            self.on_alert()
        for node_id, ids in acks.items():
            for i in range(0, len(ids), ACK_MAX_IDS):
                self.client.publish(self.topics.ack(node_id),
                                    encode(Ack(ids=ids[i:i + ACK_MAX_IDS])), qos=1)
        for item, maybe in zip(batch, outcomes, strict=True):
            if maybe is not None and item.qos > 0:
                self.client.ack(item.mid, item.qos)
        return [o for o in outcomes if o is not None]

    def _commit_batch(self, batch: list[Inbound]) -> list[Outcome | None]:
        """All messages in one transaction; on any error, one transaction per message."""
        if len(batch) > 1:
            rejected: list[tuple[Inbound, Rejected]] = []
            try:
                with self.sessions() as s, s.begin():
                    outs: list[Outcome | None] = []
                    nodes = self._preload(s, batch)  # noqa: F841  (held in the identity map)
                    beats: set[str] = set()
                    for item in batch:
                        try:  # Rejected is always raised before anything is written
                            outs.append(self._in_tx(s, item, beats))
                        except Rejected as exc:
                            rejected.append((item, exc))
                            outs.append(Outcome())
                    # one retention delete for the batch, not a round trip per heartbeat
                    health.forget(s, beats, self.clock.now(),
                                          self.cfg.health_history_days)
            except Exception as exc:  # a race with a replica, the DB away, a bug: go slowly
                log.info("batch of %d failed (%s); retrying one by one", len(batch), exc)
            else:
                for item, rej in rejected:
                    self._count_rejected(item, rej)
                return outs
        return [self._process_retrying(item) for item in batch]

    def _preload(self, s: Session, batch: list[Inbound]) -> list[Any]:
        """Load the batch's nodes and their ponds' kit rows in two queries, so each message
        finds them in the session instead of asking the database once per message."""
        ids = set()
        for item in batch:
            try:
                ids.add(self.topics.parse(item.topic).node_id)
            except TopicError:
                continue
        if not ids:
            return []
        nodes = list(s.scalars(select(Node).where(Node.id.in_(ids))))
        ponds = {n.pond_id for n in nodes}
        kit: list[Any] = list(s.scalars(select(EquipmentState)
                                        .where(EquipmentState.pond_id.in_(ponds))))
        return [*nodes, *kit]

    def _count_rejected(self, item: Inbound, exc: Rejected) -> None:
        """Log and count one rejected message."""
        self.metrics.rejected.labels(exc.reason).inc()
        log.warning("rejected message on %r: %.300r", item.topic[:TOPIC_LOG_MAX], str(exc))

    def _process_retrying(self, item: Inbound) -> Outcome | None:
        """Process; retry while the database is unreachable; None if stopping meanwhile."""
        delay = 0.2
        while True:
            try:
                return self.process(item)
            except Rejected as exc:
                self._count_rejected(item, exc)
                return Outcome()
            except DBAPIError as exc:
                log.error("database error while ingesting (retrying in %.1fs): %s", delay, exc)
                if self._stop.wait(delay):
                    return None
                delay = min(delay * 2, 5.0)
            except Exception:
                log.exception("unexpected error ingesting %r; message dropped",
                              item.topic[:TOPIC_LOG_MAX])
                self.metrics.rejected.labels("internal").inc()
                return Outcome()

    def _parse(self, item: Inbound) -> Topic:
        """The parsed topic, counted by kind; Rejected when foreign."""
        try:
            topic = self.topics.parse(item.topic)
        except TopicError as exc:
            raise Rejected("topic", str(exc)) from exc
        self.metrics.messages.labels(topic.kind).inc()
        return topic

    def _in_tx(self, s: Session, item: Inbound, beats: set[str] | None = None) -> Outcome:
        """Validate and store one message inside the caller's transaction; a heartbeat's
        node goes into beats when given (the caller forgets their old samples at once)."""
        topic = self._parse(item)
        node = s.get(Node, topic.node_id)
        if node is None:
            raise Rejected("unknown_node", f"node {topic.node_id!r} is not in the registry")
        return self._dispatch(s, topic, node, item.payload, beats)

    def process(self, item: Inbound) -> Outcome:
        """Validate and store one message in its own transaction; Rejected when unusable."""
        try:
            with self.sessions() as s, s.begin():
                return self._in_tx(s, item)
        except IntegrityError:
            topic = self.topics.parse(item.topic)
            if topic.kind in ("event", "snapshot"):  # a replica or redelivery won the race
                self.metrics.duplicates.inc()
                event_id = self._event_id(item.payload) if topic.kind == "event" else None
                return Outcome(node_id=topic.node_id, event_id=event_id)
            raise

    @staticmethod
    def _event_id(payload: bytes) -> str | None:
        """The id of an event payload that already passed validation once."""
        try:
            return decode(Event, payload).id
        except PayloadError:
            return None

    def _dispatch(self, s: Session, topic: Topic, node: Node, payload: bytes,
                  beats: set[str] | None = None) -> Outcome:
        """Route one message by kind."""
        now = self.clock.now()
        if topic.kind == "event":
            return self._event(s, topic, node, payload, now)
        if topic.kind == "snapshot":
            return self._snapshot(s, topic, payload, now)
        if topic.kind == "status":
            if not payload:
                return Outcome()  # a cleared retained status
            st: Status = _decode(Status, payload, STATUS_MAX_BYTES)
            if st.state == "online":
                node_watch.heard(s, self.cfg, node, now)
            elif st.reason == "planned":
                node_watch.planned_stop(s, node, now)
            else:
                node_watch.lost(s, node, node_watch.LOST, now)
            node.version = st.version
            return Outcome(new_alert=st.state == "offline" and st.reason is None)
        if topic.kind == "health":
            h: Health = _decode(Health, payload, MAX_HEALTH_BYTES)
            # A heartbeat of a node already online changes no alert: its writes need not be
            # flushed before each query, but once with the batch (the hot path of a fleet).
            steady = node.state == "online"
            with s.no_autoflush if steady else contextlib.nullcontext():
                node.health, node.health_at = h.model_dump(mode="json"), now
                health.record(s, node.id, h, now, self.cfg.health_history_days,
                                      purge=beats is None)
                if beats is not None:
                    beats.add(node.id)
                node_watch.heard(s, self.cfg, node, now, h.interval_s)
                if h.version:
                    node.version = h.version
                if h.equipment:
                    alerts.apply_health_equipment(s, node.pond_id, h.equipment, now)
            return Outcome()
        if topic.kind == "cmd/result":
            res: CommandResult = _decode(CommandResult, payload, MAX_CMD_BYTES)
            if not commands.record_result(s, node.id, res, now):
                raise Rejected("unknown_command", f"no command {res.id} for {node.id}")
            log.info("command %s on %s: ok=%s result=%.200r", res.id, node.id, res.ok, res.result)
            return Outcome()
        raise Rejected("topic", f"kind {topic.kind} is not for the server")

    def _event(self, s: Session, topic: Topic, node: Node, payload: bytes, now: Any) -> Outcome:
        """Store an event once, route it to an alert."""
        ev: Event = _decode(Event, payload, MAX_EVENT_BYTES)
        if ev.node_id != topic.node_id:
            raise Rejected("node_mismatch",
                           f"event says node {ev.node_id!r} on {topic.node_id}'s topic")
        known = s.get(EventRow, ev.id)
        if known is not None and known.node_id != node.id:
            raise Rejected("node_mismatch", f"event id {ev.id} is another node's")
        if known is not None:
            self.metrics.duplicates.inc()
            return Outcome(node_id=node.id, event_id=ev.id)
        if ev.ref is not None:  # a clearing event ends only an event of its own node
            ended = s.get(EventRow, ev.ref)
            if ended is not None and ended.node_id != node.id:
                raise Rejected("node_mismatch", f"event {ev.id} ends {ev.ref}, another node's")
        if ev.pond_id != node.pond_id:
            log.warning("node %s reports pond %.80r but the registry says %s; using the registry",
                        node.id, ev.pond_id, node.pond_id)
        row = EventRow(id=ev.id, node_id=node.id, pond_id=node.pond_id, type=ev.type.value,
                       severity=ev.severity.value, ts=ev.ts, received_at=now,
                       payload=ev.to_wire())
        s.add(row)
        s.flush()
        before = row.alert_id
        alert = alerts.on_event(s, row, ev, alerts.policy_of(s, node.pond_id), now,
                                self.cfg.escalation.incident_clear_s)
        self.metrics.events.labels(ev.type.value).inc()
        new = alert is not None and alert.event_count == 1 and before is None and \
            alert.state == "open"
        if new and alert is not None:
            self.metrics.alerts_opened.labels(alert.kind).inc()
        if alert is not None and alert.snapshot_event_id is None and ev.snapshot:
            alert.snapshot_event_id = ev.id
        return Outcome(node_id=node.id, event_id=ev.id, alert_id=alert.id if alert else None,
                       new_alert=new)

    def _snapshot(self, s: Session, topic: Topic, payload: bytes, now: Any) -> Outcome:
        """Store a JPEG keyed by (node, event id), whichever of event and JPEG arrives first;
        one naming another node's event is refused. A JPEG whose event never comes is
        deleted by the housekeeping (orphans), except the node's on-request `snap-…`."""
        if len(payload) > MAX_SNAPSHOT_BYTES:
            raise Rejected("oversized", f"snapshot of {len(payload)} bytes > {MAX_SNAPSHOT_BYTES}")
        if not payload.startswith(b"\xff\xd8"):
            raise Rejected("not_jpeg", "snapshot is not a JPEG")
        assert topic.event_id is not None
        raw_of = frame_of(topic.event_id)
        event_id = raw_of or topic.event_id
        ev = s.get(EventRow, event_id)
        if ev is not None and ev.node_id != topic.node_id:
            raise Rejected("node_mismatch", f"snapshot of event {event_id}, another node's")
        key = {"event_id": event_id, "node_id": topic.node_id}
        if raw_of is not None:  # the unannotated frame of a critical event (learning loop)
            if s.get(EventFrame, key) is None:
                s.add(EventFrame(event_id=raw_of, node_id=topic.node_id, received_at=now,
                                 data=payload))
            return Outcome()
        if s.get(Snapshot, key) is None:
            s.add(Snapshot(event_id=topic.event_id, node_id=topic.node_id, received_at=now,
                           data=payload))
            if ev is not None and ev.alert_id is not None:
                alert = s.get(Alert, ev.alert_id)
                if alert is not None and alert.snapshot_event_id is None:
                    alert.snapshot_event_id = ev.id
        return Outcome()

