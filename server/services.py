"""The server's long-lived parts wired together, with one start and one stop."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session, sessionmaker

from protocol.topics import REQUESTED_PREFIX
from server.access import auth, registry
from server.access.auth import Sessions
from server.access.links import AckLinks
from server.alerting.escalation import Escalator
from server.alerting.paging import Pager, Sender, apprise_send
from server.alerting.patrol import Patrol
from server.core.clock import Clock, SystemClock
from server.core.config import ServerConfig
from server.core.db import (
    EventFrame,
    EventRow,
    Grid,
    Node,
    Snapshot,
    make_engine,
    make_sessions,
)
from server.core.metrics import Metrics
from server.core.migrate import upgrade
from server.core.net import is_loopback
from server.fleet.node_watch import NodeWatch
from server.link.ingest import Ingestor
from server.link.supervisor import BrokerSupervisor

log = logging.getLogger(__name__)
ORPHAN_S = 600  # a snapshot or frame whose event (of its node) has not come by then goes


class Services:
    """Database, ingest, escalation, paging and the private broker of one server."""

    def __init__(self, cfg: ServerConfig, clock: Clock | None = None,
                 send: Sender = apprise_send) -> None:
        """Build everything; nothing runs until prepare()/start()."""
        self.cfg = cfg
        self.clock: Clock = clock or SystemClock()
        self.engine = make_engine(cfg.database)
        self.sessions: sessionmaker[Session] = make_sessions(self.engine)
        self.metrics = Metrics()
        key = cfg.resolved_secret()
        self.links = AckLinks(key, cfg.http.public_url, cfg.link_ttl_s)
        self.web_sessions = Sessions(key, cfg.session_ttl_s)
        self.throttle = auth.LoginThrottle()
        self.pager = Pager(self.sessions, self.clock, self.metrics, self.links,
                           cfg.paging_workers, send, settings=cfg.paging)
        self.escalator = Escalator(cfg, self.sessions, self.clock, self.metrics, self.pager)
        self.node_watch = NodeWatch(cfg, self.sessions, self.clock, on_alert=self.escalator.wake)
        self.patrol = Patrol(cfg.patrol, self.sessions, self.clock,
                             lambda urls, title, body: self.pager.reach(urls, title, body, None))
        self.metrics_token = cfg.resolved_metrics_token()
        if self.metrics_token is None and not is_loopback(cfg.bind_host):
            log.warning("/metrics is open to anyone who reaches %s; set metrics_token (env "
                        "PONDWATCH_METRICS_TOKEN) to require a bearer token", cfg.http.bind)
        self.supervisor: BrokerSupervisor | None = None
        self.ingest: Ingestor | None = None
        self._prepared = False
        self._stop = threading.Event()
        self._janitor: threading.Thread | None = None

    def prepare(self) -> None:
        """Migrate to head, import the configured registry, set the env admin."""
        if self._prepared:
            return
        upgrade(self.engine)
        if self.cfg.registry:
            registry.import_file(self.sessions, self.cfg.registry)
        with self.sessions() as s, s.begin():
            auth.ensure_env_admin(s)
            for grid in s.scalars(select(Grid)):
                if grid.policy not in self.cfg.escalation.policies:
                    log.warning("grid %s names escalation policy %r, which server.yaml does not "
                                "define; using 'default'", grid.id, grid.policy)
        self._prepared = True

    @property
    def broker_url(self) -> str:
        """The configured broker, or the private one."""
        if self.cfg.mqtt.url:
            return self.cfg.mqtt.url
        if self.supervisor is None:
            data_dir = self.cfg.mqtt.data_dir
            db = self.engine.url
            if data_dir is None and db.get_backend_name() == "sqlite" and db.database and \
                    db.database != ":memory:":
                data_dir = Path(db.database).resolve().parent / "mosquitto"
            self.supervisor = BrokerSupervisor(data_dir, self.metrics,
                                               port=self.cfg.mqtt.private_port,
                                               prefix=self.cfg.mqtt.topic_prefix)
        return self.supervisor.url

    def start(self, mqtt: bool = True, escalate: bool = True) -> None:
        """Prepare, start the private broker if needed, ingest, escalation and housekeeping."""
        self.prepare()
        login = None
        if mqtt:
            url = self.broker_url
            if self.supervisor is not None:
                with self.sessions() as s:
                    self.supervisor.start(s.scalars(select(Node.id)))
                login = self.supervisor.server_login
            self.ingest = Ingestor(self.cfg, self.sessions, self.clock, self.metrics, url,
                                   on_alert=self.escalator.wake, login=login)
            self.pager.owner = self.ingest.client_id
            self.ingest.start()
            self.node_watch.start()
        if escalate:
            self.escalator.start()
            self.patrol.start()
        self._janitor = threading.Thread(target=self._housekeeping, name="janitor", daemon=True)
        self._janitor.start()

    def purge_snapshots(self) -> int:
        """Delete snapshots and unannotated event frames older than the retention period,
        and orphans: those whose event of the same node has not come within ORPHAN_S
        (on-request `snap-…` snapshots belong to no event); returns how many."""
        now = self.clock.now()
        cutoff = now - timedelta(days=self.cfg.snapshot_retention_days)
        n = 0
        with self.sessions() as s, s.begin():
            for model in (Snapshot, EventFrame):
                own_event = exists().where(EventRow.id == model.event_id,
                                           EventRow.node_id == model.node_id)
                orphan = (model.received_at < now - timedelta(seconds=ORPHAN_S)) & ~own_event
                if model is Snapshot:
                    orphan &= ~Snapshot.event_id.startswith(REQUESTED_PREFIX)
                res = s.execute(delete(model).where((model.received_at < cutoff) | orphan))
                n += int(getattr(res, "rowcount", 0) or 0)
        if n:
            log.info("deleted %d snapshots older than %s", n, cutoff.isoformat())
        return n

    def _housekeeping(self) -> None:
        """Purge old snapshots, and re-send models to nodes that missed them, at start and
        hourly."""
        while True:
            try:
                self.purge_snapshots()
            except Exception:
                log.exception("snapshot purge failed")
            try:
                self.resend_models()
            except Exception:
                log.exception("model re-send failed")
            if self._stop.wait(3600):
                return

    def resend_models(self) -> int:
        """model_update again to nodes running another model than assigned that never got
        (or missed, being offline) the last one; returns how many were sent."""
        from server.fleet import rollout
        from server.link import commands
        if self.ingest is None or not self.ingest.connected.is_set():
            return 0
        now, sent = self.clock.now(), 0
        with self.sessions() as s, s.begin():
            for node, model in rollout.due_updates(s, now):
                try:
                    commands.send(s, self.ingest.client, self.ingest.topics, node.id,
                                  "model_update",
                                  rollout.update_args(s, self.cfg, model, node.id, now),
                                  self.cfg.models.download_ttl_s, "server", now)
                    sent += 1
                except commands.CommandError as exc:
                    log.warning("model_update to %s not sent: %s", node.id, exc)
        if sent:
            log.info("model_update re-sent to %d node(s)", sent)
        return sent

    def stop(self) -> None:
        """Stop in reverse order; safe to call twice."""
        self._stop.set()
        if self.ingest is not None:
            self.ingest.stop()
            self.ingest = None
        self.node_watch.stop()
        self.patrol.stop()
        self.escalator.stop()
        self.pager.stop(timeout=4.0)
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None
        self.engine.dispose()
