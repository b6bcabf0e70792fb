"""PondWatch wire contract v1: topics, payload models and limits shared by node and server."""

from protocol.limits import (
    MAX_CMD_BYTES,
    MAX_EVENT_BYTES,
    MAX_HEALTH_BYTES,
    MAX_SNAPSHOT_BYTES,
    SCHEMA_VERSION,
)
from protocol.payloads import (
    CRITICAL_TYPES,
    Ack,
    Command,
    CommandResult,
    Event,
    EventType,
    Health,
    PayloadError,
    Severity,
    Status,
    decode,
    encode,
    severity_of,
)
from protocol.topics import DEFAULT_PREFIX, NODE_ID_PATTERN, Topic, TopicError, Topics

__all__ = [
    "CRITICAL_TYPES",
    "DEFAULT_PREFIX",
    "MAX_CMD_BYTES",
    "MAX_EVENT_BYTES",
    "MAX_HEALTH_BYTES",
    "MAX_SNAPSHOT_BYTES",
    "NODE_ID_PATTERN",
    "SCHEMA_VERSION",
    "Ack",
    "Command",
    "CommandResult",
    "Event",
    "EventType",
    "Health",
    "PayloadError",
    "Severity",
    "Status",
    "Topic",
    "TopicError",
    "Topics",
    "decode",
    "encode",
    "severity_of",
]
