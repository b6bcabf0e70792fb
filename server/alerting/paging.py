"""Page delivery through Apprise in a worker pool; every attempt goes on the timeline."""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import apprise
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from server.access.links import AckLinks
from server.alerting import alerts, channels
from server.alerting.wording import page_text
from server.core.clock import Clock
from server.core.config import PagingSettings
from server.core.db import Alert, Delivery, Person, Pond, event_snapshot
from server.core.metrics import Metrics

log = logging.getLogger(__name__)
Sender = Callable[[str, str, str, Path | None], bool]
LEASE_S = 120.0  # a delivery 'sending' longer than this by a replica that is gone is re-sent
SWEEP_AGE_S = 2.0  # pending this long and in nobody's queue: a replica died before sending


# Secure variants of a channel kind share its attach_images setting.
_SECURE = {"jsons": "json", "forms": "form", "xmls": "xml", "mailtos": "mailto",
           "smseagles": "smseagle"}


def channel_kind(url: str) -> str:
    """The kind of a person's channel: its Apprise URL scheme (json, mailto, dingtalk, …)."""
    scheme = url.split("://", 1)[0].lower()[:32]
    return _SECURE.get(scheme, scheme)


def apprise_send(url: str, title: str, body: str, attachment: Path | None) -> bool:
    """Deliver one page to one Apprise URL; True on success."""
    channels.register()
    ap = apprise.Apprise()
    if not ap.add(url):
        log.warning("not a usable Apprise URL: %s", url.split("://", 1)[0] + "://…")
        return False
    attach = apprise.AppriseAttachment(str(attachment)) if attachment else None
    # The text is plain: an HTML channel (email) escapes it and keeps its lines.
    return bool(ap.notify(body=body, title=title, attach=attach,
                          body_format=apprise.NotifyFormat.TEXT))


class Pager:
    """Sends pending deliveries in parallel so a slow channel delays nothing else."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock, metrics: Metrics,
                 links: AckLinks, workers: int, send: Sender = apprise_send,
                 on_person_failed: Callable[[int], None] = lambda alert_id: None,
                 settings: PagingSettings | None = None) -> None:
        """on_person_failed(alert_id) is called when someone could not be reached at all."""
        self.sessions, self.clock, self.metrics, self.links = sessions, clock, metrics, links
        self.send = send
        self.settings = settings or PagingSettings.model_validate({})
        self.on_person_failed = on_person_failed
        # Who holds a delivery while sending: the replica's MQTT client id (set by Services).
        self.owner = f"pondwatch-server-{os.getpid()}"
        self.lease_s = LEASE_S
        self._pg = sessions.kw["bind"].dialect.name == "postgresql"
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pager")
        self._futures: dict[int, Future[None]] = {}
        self._inflight: set[int] = set()
        self._lock = threading.Lock()
        self._tmp = tempfile.TemporaryDirectory(prefix="pondwatch-pages-")
        # Workers only read and send; one recorder writes results in batches, so many
        # parallel pages do not fight over the database's write lock.
        self._results: queue.Queue[tuple[int, list[tuple[str, bool]]] | None] = queue.Queue()
        self._recorder = threading.Thread(target=self._record_loop, name="pager-recorder",
                                          daemon=True)
        self._recorder.start()

    def submit(self, delivery_ids: list[int]) -> None:
        """Queue deliveries; one already in flight is not sent twice."""
        for did in delivery_ids:
            with self._lock:
                if did in self._inflight:
                    continue
                self._inflight.add(did)
                try:
                    self._futures[did] = self._pool.submit(self._guarded, did)
                except RuntimeError:  # stopping: leave it pending for the next owner
                    self._inflight.discard(did)

    def idle(self, timeout: float = 10.0) -> bool:
        """Poll until no delivery is in flight (for tests and shutdown); False on timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if not self._inflight:
                    return True
            time.sleep(0.01)
        return False

    def _hand_back(self, s: Session, *cond: Any) -> int:
        """Put 'sending' deliveries matching cond back to pending; returns how many."""
        res = s.execute(update(Delivery).where(Delivery.status == "sending", *cond)
                        .values(status="pending", claimed_by=None, lease_until=None)
                        .execution_options(synchronize_session=False))
        return int(getattr(res, "rowcount", 0) or 0)

    def resume(self) -> int:
        """Queue what is pending, what this replica held when it died, and expired leases.

        Deliveries another live replica holds (its lease not expired) are left alone."""
        now = self.clock.now()
        with self.sessions() as s, s.begin():
            self._hand_back(s, or_(Delivery.claimed_by == self.owner,
                                   Delivery.claimed_by.is_(None), Delivery.lease_until.is_(None),
                                   Delivery.lease_until < now))
        with self.sessions() as s:
            ids = list(s.scalars(select(Delivery.id).where(Delivery.status == "pending")))
        self.submit(ids)
        return len(ids)

    def sweep(self) -> int:
        """Take over deliveries of a replica that died: expired leases, and pending ones
        nobody sent for SWEEP_AGE_S; returns how many were queued."""
        now = self.clock.now()
        expired = 0
        with self.sessions() as s:  # read first: SQLite's one write lock stays free
            stale = s.scalar(select(Delivery.id).where(Delivery.status == "sending",
                                                       Delivery.lease_until < now).limit(1))
        if stale is not None:
            with self.sessions() as s, s.begin():
                expired = self._hand_back(s, Delivery.lease_until < now)
        if expired:
            log.warning("took over %d deliveries whose lease expired", expired)
        with self.sessions() as s:
            ids = list(s.scalars(select(Delivery.id).where(
                Delivery.status == "pending",
                Delivery.created_at <= now - timedelta(seconds=SWEEP_AGE_S)).limit(1000)))
        with self._lock:
            ids = [i for i in ids if i not in self._inflight]
        self.submit(ids)
        return len(ids)

    def stop(self, timeout: float = 5.0) -> None:
        """Finish in-flight sends for up to timeout s and record them; queued ones stay
        pending for the next owner; safe twice."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for did, fut in list(self._futures.items()):
                if fut.cancelled():
                    self._inflight.discard(did)
                    del self._futures[did]
        if not self.idle(timeout):
            with self._lock:
                left = sorted(self._inflight)
            log.warning("stopping with %d page(s) still being sent: %s (they are re-sent "
                        "after this replica restarts or their lease expires)", len(left), left)
        if self._recorder.is_alive():
            self._results.put(None)
            self._recorder.join(timeout=2)
        self._tmp.cleanup()

    def _done(self, did: int) -> None:
        """No longer in flight."""
        with self._lock:
            self._inflight.discard(did)
            self._futures.pop(did, None)

    def _guarded(self, did: int) -> None:
        """Send, then hand the results to the recorder; never kill a worker silently."""
        try:
            results = self._send(did)
        except Exception:
            log.exception("delivery %s failed unexpectedly", did)
            results = None
        if results is None:
            self._done(did)
        else:
            self._results.put((did, results))

    def _record_loop(self) -> None:
        """Write batches of results; then bring steps forward for unreachable people."""
        while True:
            item = self._results.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < 500:
                try:
                    nxt = self._results.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._results.put(None)
                    break
                batch.append(nxt)
            failed: list[int] = []
            try:
                with self.sessions() as s, s.begin():
                    for did, results in batch:
                        alert_id = self._write(s, did, results)
                        if alert_id is not None:
                            failed.append(alert_id)
            except Exception:
                log.exception("recording %d deliveries failed; one by one", len(batch))
                failed = []
                for did, results in batch:
                    try:
                        self._record(did, results)
                    except Exception:
                        log.exception("recording delivery %s failed", did)
            for alert_id in dict.fromkeys(failed):
                self.on_person_failed(alert_id)
            for did, _ in batch:
                self._done(did)

    def _attachment(self, s: Session, alert: Alert) -> Path | None:
        """The alert's snapshot as a file Apprise can attach."""
        if not alert.snapshot_event_id:
            return None
        snap = event_snapshot(s, alert.snapshot_event_id)
        if snap is None:
            return None
        # One file per delivery, removed as soon as it is sent (images of minors).
        fd, name = tempfile.mkstemp(prefix=f"snapshot-{snap.event_id[:40]}-", suffix=".jpg",
                                    dir=self._tmp.name)
        with os.fdopen(fd, "wb") as f:
            f.write(snap.data)
        return Path(name)

    def deliver(self, did: int) -> bool:
        """Send one delivery now and record it (synchronously); True if someone was reached."""
        results = self._send(did)
        return False if results is None else self._record(did, results)

    def _send(self, did: int) -> list[tuple[str, bool]] | None:
        """Send one delivery on the person's channels (in order, until one takes it); None when
        nothing was to be sent."""
        if not self._claim(did):
            return None
        with self.sessions() as s:
            d = s.get(Delivery, did)
            if d is None:
                return None
            alert = s.get(Alert, d.alert_id)
            person = s.get(Person, d.person_id)
            pond = s.get(Pond, alert.pond_id) if alert else None
            if alert is None or person is None or pond is None:
                d.status, d.detail = "failed", "alert, person or pond no longer exists"
                s.commit()
                return None
            now = self.clock.now()
            why = alerts.page_outdated(alert, d.created_at)
            if why:
                d.status, d.detail = "skipped", why
                s.commit()
                return None
            link = self.links.url(alert.id, person.id, now)
            title, body = page_text(alert, pond, link, d.step, d.reason)
            images = any(channel_kind(u) in self.settings.attach_images for u in person.notify)
            attachment = self._attachment(s, alert) if images else None
        try:
            return self.reach(person.notify, title, body, attachment)
        finally:
            if attachment is not None:
                attachment.unlink(missing_ok=True)

    def reach(self, urls: list[str], title: str, body: str,
              attachment: Path | None) -> list[tuple[str, bool]]:
        """Try a person's channels in order until one takes the message: each is tried again
        `retries` times after an error answer or a timeout, then the next channel is tried.
        The attachment goes only to channel kinds listed in attach_images. Returns
        (channel kind, ok) per try."""
        results: list[tuple[str, bool]] = []
        cfg = self.settings
        for url in urls:
            channel = channel_kind(url)
            image = attachment if channel in cfg.attach_images else None
            ok = False
            for attempt in range(cfg.retries + 1):
                if attempt and cfg.retry_wait_s:
                    time.sleep(cfg.retry_wait_s)  # a pause between tries, not a wait in tests
                try:
                    ok = self.send(url, title, body, image)
                except Exception as exc:  # a broken plugin must not stop the other channels
                    log.warning("channel %s raised: %s", channel, exc)
                    ok = False
                results.append((channel, ok))
                self.metrics.pages.labels(channel, "ok" if ok else "failed").inc()
                if ok:
                    return results
                log.warning("channel %s failed (try %d of %d)", channel, attempt + 1,
                            cfg.retries + 1)
        return results

    def _claim(self, did: int) -> bool:
        """Take a pending delivery under this replica's lease, so each page goes out once:
        a row lock skipped by the others on PostgreSQL, a conditional update on SQLite."""
        lease = self.clock.now() + timedelta(seconds=self.lease_s)
        with self.sessions() as s, s.begin():
            if self._pg:
                row = s.scalars(select(Delivery.id).where(
                    Delivery.id == did, Delivery.status == "pending")
                    .with_for_update(skip_locked=True)).first()
                if row is None:
                    return False
            res = s.execute(update(Delivery).where(Delivery.id == did,
                                                   Delivery.status == "pending")
                            .values(status="sending", claimed_by=self.owner, lease_until=lease)
                            .execution_options(synchronize_session=False))
            return getattr(res, "rowcount", 0) == 1

    def _record(self, did: int, results: list[tuple[str, bool]]) -> bool:
        """Record one delivery in its own transaction; True if someone was reached."""
        with self.sessions() as s, s.begin():
            failed_alert = self._write(s, did, results)
        if failed_alert is not None:
            self.on_person_failed(failed_alert)
        return failed_alert is None and any(ok for _, ok in results)

    def _write(self, s: Session, did: int, results: list[tuple[str, bool]]) -> int | None:
        """Write attempts, delivery status, notified state; the alert id if nobody answered."""
        reached = any(ok for _, ok in results)
        d = s.get(Delivery, did)
        alert = s.get(Alert, d.alert_id) if d else None
        if d is None or alert is None:
            return None
        now = self.clock.now()
        for channel, ok in results:
            alerts.timeline(s, alert, now, "delivery", f"step {d.step}", person_id=d.person_id,
                            channel=channel, result="ok" if ok else "failed")
        if not results:
            alerts.timeline(s, alert, now, "delivery", f"step {d.step}: no channels",
                            person_id=d.person_id, result="failed")
        d.status, d.sent_at, d.lease_until = ("sent" if reached else "failed"), now, None
        if reached:
            if alert.state == "open":
                self.metrics.page_latency.observe((now - alert.opened_at).total_seconds())
            alerts.mark_notified(s, alert, now)
        if reached:
            return None
        log.warning("could not reach %s for alert %s on any channel", d.person_id, d.alert_id)
        return d.alert_id


def delivery_times(s: Session, alert_id: int) -> list[datetime]:
    """When each successful delivery of an alert went out (for reports and tests)."""
    q = select(Delivery.sent_at).where(Delivery.alert_id == alert_id, Delivery.status == "sent")
    return [t for t in s.scalars(q) if t is not None]
