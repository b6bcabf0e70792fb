"""Live alert updates: committed alert changes broadcast in-process to Server-Sent Event streams."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from server.core.db import Alert, TimelineEntry

log = logging.getLogger(__name__)
_KEY = "pondwatch_live_alerts"
MAX_SUBSCRIBERS = 500
MAX_PER_OWNER = 4  # streams one user may hold open (a few tabs and a phone)
QUEUE_SIZE = 100


@dataclass(frozen=True)
class Change:
    """One alert that changed in a committed transaction."""

    alert_id: int
    pond_id: str


class Subscription:
    """One SSE stream's queue; filled from any thread, read on the event loop."""

    def __init__(self, hub: Hub, loop: asyncio.AbstractEventLoop, owner: str = "") -> None:
        """Bound to the loop that reads it; owner is the user holding it."""
        self._hub, self._loop, self.owner = hub, loop, owner
        self.queue: asyncio.Queue[Change | None] = asyncio.Queue(QUEUE_SIZE)
        self.overflowed = False

    def _put(self, item: Change | None) -> None:
        """On the loop: enqueue; a reader far behind is told to fetch everything again."""
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            if not self.overflowed:
                log.warning("live subscriber %d changes behind; it will resync", QUEUE_SIZE)
            self.overflowed = True

    def push(self, item: Change | None) -> None:
        """From any thread."""
        try:
            self._loop.call_soon_threadsafe(self._put, item)
        except RuntimeError:  # the loop is closed: the stream is gone
            self._hub.unsubscribe(self)

    async def next(self, timeout: float) -> Change | None | bool:
        """The next change, None when the hub closed, False after timeout seconds of quiet,
        True when changes were lost (the reader should fetch everything again)."""
        if self.overflowed:
            self.overflowed = False
            while not self.queue.empty():
                if self.queue.get_nowait() is None:
                    return None
            return True
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return False

    def close(self) -> None:
        """Leave the hub."""
        self._hub.unsubscribe(self)


class Hub:
    """Subscribers and the fan-out to them; closed once when the server stops."""

    def __init__(self) -> None:
        """No subscribers yet."""
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self.closed = False

    def subscribe(self, owner: str = "") -> Subscription | None:
        """A new subscription on the running loop; None when full, closed, or when owner
        (a user name) already holds MAX_PER_OWNER streams."""
        sub = Subscription(self, asyncio.get_running_loop(), owner)
        with self._lock:
            if self.closed or len(self._subs) >= MAX_SUBSCRIBERS:
                return None
            if owner and sum(s.owner == owner for s in self._subs) >= MAX_PER_OWNER:
                return None
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget one subscription (safe twice)."""
        with self._lock:
            self._subs.discard(sub)

    def publish(self, changes: list[Change]) -> None:
        """Send committed changes to every subscriber."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            for c in changes:
                sub.push(c)

    def close(self) -> None:
        """End every stream (the server is stopping)."""
        with self._lock:
            self.closed = True
            subs, self._subs = list(self._subs), set()
        for sub in subs:
            sub.push(None)

    def holds(self, owner: str) -> int:
        """How many streams owner holds."""
        with self._lock:
            return sum(s.owner == owner for s in self._subs)

    @property
    def subscribers(self) -> int:
        """How many streams are open."""
        with self._lock:
            return len(self._subs)


def attach(sessions: sessionmaker[Session], hub: Hub) -> None:
    """Publish every alert a session flushes, once its transaction commits."""
    key = f"{_KEY}:{id(hub)}"  # each hub attached to the same sessions keeps its own list
    def after_flush(session: Session, _ctx: Any) -> None:
        """Collect alerts written or given a timeline row in this flush."""
        got: dict[int, str | None] = session.info.setdefault(key, {})
        for obj in (*session.new, *session.dirty):
            if isinstance(obj, Alert) and obj.id is not None:
                got[obj.id] = obj.pond_id
            elif isinstance(obj, TimelineEntry) and obj.alert_id is not None:
                got.setdefault(obj.alert_id, None)

    def after_commit(session: Session) -> None:
        """Hand the committed alerts to the hub."""
        got: dict[int, str | None] = session.info.pop(key, {})
        if not got:
            return
        missing = [i for i, p in got.items() if p is None]
        if missing:
            for a in session.identity_map.values():
                if isinstance(a, Alert) and a.id in got and got[a.id] is None:
                    got[a.id] = a.pond_id
        hub.publish([Change(i, p) for i, p in got.items() if p is not None])

    def after_rollback(session: Session) -> None:
        """Nothing was committed."""
        session.info.pop(key, None)

    event.listen(sessions, "after_flush", after_flush)
    event.listen(sessions, "after_commit", after_commit)
    event.listen(sessions, "after_rollback", after_rollback)
