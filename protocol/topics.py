"""Topic builders and the topic parser of the v1 wire contract."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

DEFAULT_PREFIX = "pondwatch/v1"
NODE_ID_PATTERN = r"[a-z0-9][a-z0-9-]{0,63}"
# Broker user names the server's accounts use (pondwatch-server, pondwatch-server-<replica>):
# no node may be called `pondwatch` or `pondwatch-…`, so no node is given a server's account.
RESERVED_NODE_PREFIX = "pondwatch"
_NODE_RE = re.compile(NODE_ID_PATTERN)  # fullmatch: `$` would let a trailing newline in
_EVENT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_KINDS = ("status", "event", "snapshot", "health", "ack", "cmd", "cmd/result")
FRAME_SUFFIX = "-frame"  # snapshot/{event_id}-frame: the event's unannotated frame
REQUESTED_PREFIX = "snap-"  # snapshot/snap-{uuid}: a snapshot taken on request, no event


def requested_snapshot_id() -> str:
    """A fresh, unguessable id for a snapshot taken on request (`snap-` + a uuid4)."""
    return f"{REQUESTED_PREFIX}{uuid.uuid4().hex}"


def frame_id(event_id: str) -> str:
    """The snapshot id under which an event's unannotated frame travels."""
    return f"{event_id}{FRAME_SUFFIX}"


def frame_of(snapshot_id: str) -> str | None:
    """The event id when a snapshot id names an unannotated frame, else None."""
    return snapshot_id.removesuffix(FRAME_SUFFIX) if snapshot_id.endswith(FRAME_SUFFIX) else None


def _valid_snapshot_id(snapshot_id: str) -> bool:
    """An event id, or the frame id of one (an id of up to 64 characters, then `-frame`)."""
    return any(_EVENT_ID_RE.fullmatch(i) for i in (snapshot_id, frame_of(snapshot_id)) if i)


class TopicError(ValueError):
    """A topic that is not part of the wire contract."""


@dataclass(frozen=True)
class Topic:
    """A parsed topic: which node, which kind, and the event id of a snapshot."""

    node_id: str
    kind: str
    event_id: str | None = None


def check_node_id(node_id: str) -> str:
    """Return node_id, or raise TopicError when it does not match NODE_ID_PATTERN or is
    reserved for the server's broker accounts (`pondwatch`, `pondwatch-*`)."""
    if not _NODE_RE.fullmatch(node_id):
        raise TopicError(f"node id {node_id!r} does not match {NODE_ID_PATTERN}")
    if node_id == RESERVED_NODE_PREFIX or node_id.startswith(f"{RESERVED_NODE_PREFIX}-"):
        raise TopicError(f"node id {node_id!r} is reserved: {RESERVED_NODE_PREFIX} and "
                         f"{RESERVED_NODE_PREFIX}-… name the server's broker accounts")
    return node_id


@dataclass(frozen=True)
class Topics:
    """Builds and parses the topics under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def node(self, node_id: str) -> str:
        """The root of one node's topics."""
        return f"{self.prefix}/node/{check_node_id(node_id)}"

    def status(self, node_id: str) -> str:
        """Retained online/offline status; also the Last Will."""
        return f"{self.node(node_id)}/status"

    def event(self, node_id: str) -> str:
        """Events raised by the node."""
        return f"{self.node(node_id)}/event"

    def snapshot(self, node_id: str, event_id: str) -> str:
        """The JPEG snapshot belonging to one event."""
        if not _valid_snapshot_id(event_id):
            raise TopicError(f"event id {event_id!r} is not a valid id")
        return f"{self.node(node_id)}/snapshot/{event_id}"

    def frame(self, node_id: str, event_id: str) -> str:
        """The unannotated JPEG of a critical event (a second snapshot-like message)."""
        return self.snapshot(node_id, frame_id(event_id))

    def health(self, node_id: str) -> str:
        """Heartbeats."""
        return f"{self.node(node_id)}/health"

    def ack(self, node_id: str) -> str:
        """Server → node: events committed by the server."""
        return f"{self.node(node_id)}/ack"

    def cmd(self, node_id: str) -> str:
        """Server → node commands."""
        return f"{self.node(node_id)}/cmd"

    def cmd_result(self, node_id: str) -> str:
        """Node → server command results."""
        return f"{self.node(node_id)}/cmd/result"

    def all_nodes(self, kind: str = "#") -> str:
        """Subscription filter for one kind (or everything) from every node."""
        return f"{self.prefix}/node/+/{kind}"

    def parse(self, topic: str) -> Topic:
        """Split a topic into node id, kind and event id; raise TopicError if it is foreign."""
        head = f"{self.prefix}/node/"
        if not topic.startswith(head):
            raise TopicError(f"topic {topic!r} is not under {head}")
        parts = topic[len(head):].split("/")
        node_id = check_node_id(parts[0])
        rest = parts[1:]
        if rest and rest[0] == "snapshot" and len(rest) == 2:
            if not _valid_snapshot_id(rest[1]):
                raise TopicError(f"topic {topic!r} has an invalid event id")
            return Topic(node_id, "snapshot", rest[1])
        kind = "/".join(rest)
        if kind not in _KINDS or kind == "snapshot":
            raise TopicError(f"topic {topic!r} has unknown kind {kind!r}")
        return Topic(node_id, kind)
