"""Per-node admission to the ingest queue: a token bucket and a cap on queued messages, so
one flooding node (a stolen password, a bug) cannot crowd the other nodes out."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

NODE_RATE_PER_S = 10.0  # sustained messages per node (a heartbeat is one per 30 s)
NODE_BURST = 300        # an outbox flush after an outage: 100 events with snapshot and frame
NODE_QUEUE_SHARE = 0.1  # at most this share of the ingest queue waits for one node
MAX_NODES = 100_000     # bound on the table: a fleet is at most tens of thousands


@dataclass
class _Bucket:
    """One node's tokens, when they were last filled, and its messages in the queue."""

    tokens: float
    at: float
    queued: int = 0


class NodeThrottle:
    """Admits a message of a node while it has tokens and fewer than its share queued.

    Called on the MQTT network thread (admit) and the writer thread (done); thread-safe."""

    def __init__(self, queue_size: int, rate_per_s: float = NODE_RATE_PER_S,
                 burst: int = NODE_BURST, clock: Callable[[], float] = time.monotonic) -> None:
        """Size the per-node queue share from the ingest queue's size."""
        self.rate, self.burst, self.clock = rate_per_s, float(burst), clock
        self.max_queued = max(10, int(queue_size * NODE_QUEUE_SHARE))
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def admit(self, node_id: str) -> bool:
        """Take a token and a queue place for node_id; False when it has neither to spare."""
        now = self.clock()
        with self._lock:
            b = self._buckets.get(node_id)
            if b is None:
                if len(self._buckets) >= MAX_NODES:
                    self._forget_full(now)
                b = self._buckets[node_id] = _Bucket(self.burst, now)
            b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
            b.at = now
            if b.tokens < 1 or b.queued >= self.max_queued:
                return False
            b.tokens -= 1
            b.queued += 1
            return True

    def done(self, node_id: str) -> None:
        """A message of node_id left the queue."""
        with self._lock:
            b = self._buckets.get(node_id)
            if b is not None and b.queued > 0:
                b.queued -= 1

    def _forget_full(self, now: float) -> None:
        """Drop buckets that are full again and hold nothing queued (caller holds the lock)."""
        for node_id in [n for n, b in self._buckets.items()
                        if not b.queued and b.tokens + (now - b.at) * self.rate >= self.burst]:
            del self._buckets[node_id]
