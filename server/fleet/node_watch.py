"""Heartbeat watch: a node not heard for N heartbeat intervals is marked offline once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from server.alerting import alerts
from server.core.clock import Clock
from server.core.config import ServerConfig
from server.core.db import Alert, Node

log = logging.getLogger(__name__)
# Node.state_reason while offline: said so on a clean stop; the Last Will (the broker saw
# the connection die); or heartbeats stopped.
PLANNED, LOST, SILENT = "planned", "lost", "missed_heartbeats"


def window_s(cfg: ServerConfig, node: Node) -> float:
    """Seconds of silence after which the node counts as offline."""
    return cfg.heartbeat_misses * (node.heartbeat_s or cfg.heartbeat_interval_s)


def heard(s: Session, cfg: ServerConfig, node: Node, now: datetime,
          interval_s: float | None = None) -> None:
    """The node spoke (heartbeat or status online): push its deadline on, bring it online."""
    if interval_s is not None:
        node.heartbeat_s = interval_s
    node.watch_deadline = now + timedelta(seconds=window_s(cfg, node))
    if node.state != "online":
        alerts.node_status(s, node, "online", alerts.policy_of(s, node.pond_id), now)
        node.state_reason = None


def planned_stop(s: Session, node: Node, now: datetime) -> None:
    """The node said it stops on purpose: offline with reason planned, nobody paged."""
    if node.state == "offline" and node.state_reason != PLANNED:
        return  # already lost (its alert stays open until the node is heard again)
    node.state, node.state_at, node.state_reason = "offline", now, PLANNED
    node.watch_deadline = None
    log.info("node %s stopped as planned", node.id)


def lost(s: Session, node: Node, reason: str, now: datetime) -> Alert | None:
    """The node went away without saying so: offline, and a technician task opens."""
    if node.state == "offline" and node.state_reason == PLANNED:
        return None  # the Last Will after a clean stop (or a retained copy): still planned
    alert = alerts.node_status(s, node, "offline", alerts.policy_of(s, node.pond_id), now)
    if alert is not None:
        node.state_reason = reason
    return alert


class NodeWatch:
    """Marks silent nodes offline from the database state, on an injectable clock."""

    def __init__(self, cfg: ServerConfig, sessions: sessionmaker[Session], clock: Clock,
                 on_alert: Callable[[], None] = lambda: None, period_s: float = 1.0) -> None:
        """on_alert() is called after a node was marked offline (wake the escalator)."""
        self.cfg, self.sessions, self.clock, self.on_alert = cfg, sessions, clock, on_alert
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def grace(self) -> int:
        """After a (re)start, give every watched node a full window: the server may have
        missed heartbeats while it was away (they are QoS 0). Returns nodes extended."""
        now = self.clock.now()
        n = 0
        with self.sessions() as s, s.begin():
            q = select(Node).where(Node.watch_deadline.is_not(None), Node.state != "offline")
            for node in s.scalars(q):
                fresh = now + timedelta(seconds=window_s(self.cfg, node))
                if node.watch_deadline is not None and node.watch_deadline < fresh:
                    node.watch_deadline = fresh
                    n += 1
        return n

    def check(self) -> list[str]:
        """Mark every node past its deadline offline and open its alert; returns their ids."""
        now = self.clock.now()
        with self.sessions() as s:
            due = list(s.scalars(select(Node.id).where(
                Node.watch_deadline.is_not(None), Node.watch_deadline <= now,
                Node.state != "offline")))
        marked = [nid for nid in due if self._mark(nid, now)]
        if marked:
            self.on_alert()
        return marked

    def _mark(self, node_id: str, now: datetime) -> bool:
        """Claim one node with a conditional update, then raise its alert in the same commit."""
        with self.sessions() as s, s.begin():
            res = s.execute(update(Node).where(
                Node.id == node_id, Node.watch_deadline.is_not(None),
                Node.watch_deadline <= now, Node.state != "offline")
                .values(watch_deadline=None).execution_options(synchronize_session=False))
            if getattr(res, "rowcount", 0) != 1:
                return False  # heard meanwhile, or another replica took it
            node = s.get(Node, node_id)
            if node is None:
                return False
            silent = (now - node.health_at).total_seconds() if node.health_at else None
            alert = lost(s, node, SILENT, now)
            if alert is not None:
                alerts.timeline(s, alert, now, "note",
                                f"no heartbeat for {window_s(self.cfg, node):.0f} s "
                                f"({self.cfg.heartbeat_misses} missed)"
                                + (f"; last heartbeat {silent:.0f} s ago" if silent else ""))
        log.warning("node %s missed %d heartbeats: offline", node_id, self.cfg.heartbeat_misses)
        return True

    def start(self) -> None:
        """Extend deadlines for the restart, then check every period."""
        self.grace()
        self._thread = threading.Thread(target=self._run, name="node-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Check until stopped."""
        while not self._stop.wait(self.period_s):
            try:
                self.check()
            except Exception:
                log.exception("heartbeat watch failed")

    def stop(self) -> None:
        """Stop the loop; safe twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
