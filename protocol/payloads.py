"""Pydantic payload models of the v1 wire contract, with strict decoding."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from protocol.limits import MAX_EVENT_BYTES, MAX_JSON_DEPTH
from protocol.topics import NODE_ID_PATTERN
from protocol.validation import StrictModel, field_errors


class PayloadError(ValueError):
    """A payload that is not valid JSON, too large, or does not fit its model."""


class EventType(StrEnum):
    """Every event type a node may raise."""

    PERSON_SUBMERGED = "person_submerged"
    CHILD_NEAR_WATER = "child_near_water"
    PERSON_IN_WATER = "person_in_water"
    SOS = "sos"
    EQUIPMENT_MISSING = "equipment_missing"
    CAMERA_FAULT = "camera_fault"
    PERSON_NEAR_WATER = "person_near_water"
    EVENT_END = "event_end"
    EQUIPMENT_RESTORED = "equipment_restored"
    CAMERA_OK = "camera_ok"


class Severity(StrEnum):
    """How urgent an event is; clearing events end an earlier one."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"
    CLEAR = "clear"


CRITICAL_TYPES = frozenset(
    {EventType.PERSON_SUBMERGED, EventType.CHILD_NEAR_WATER, EventType.PERSON_IN_WATER,
     EventType.SOS}
)
_SEVERITY = {
    **{t: Severity.CRITICAL for t in CRITICAL_TYPES},
    EventType.EQUIPMENT_MISSING: Severity.WARNING,
    EventType.CAMERA_FAULT: Severity.WARNING,
    EventType.PERSON_NEAR_WATER: Severity.INFO,
    EventType.EVENT_END: Severity.CLEAR,
    EventType.EQUIPMENT_RESTORED: Severity.CLEAR,
    EventType.CAMERA_OK: Severity.CLEAR,
}
# Lower rank is kept longer when the outbox must evict.
SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.CLEAR: 2, Severity.INFO: 3}


def severity_of(event_type: EventType | str) -> Severity:
    """The fixed severity of an event type."""
    return _SEVERITY[EventType(event_type)]


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_event_id() -> str:
    """A unique event id generated on the node."""
    return uuid.uuid4().hex


def _aware(value: datetime) -> datetime:
    """A timezone-aware timestamp in UTC, or ValueError."""
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a timezone (ISO 8601 with Z or +00:00)")
    return value.astimezone(UTC)


class Event(BaseModel):
    """An event raised by a node; type-specific fields beyond these are allowed."""

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_: Literal[1] = Field(1, alias="schema", description="Wire schema version (1).")
    id: str = Field(default_factory=new_event_id, pattern=r"^[A-Za-z0-9_-]{1,64}$",
                    description="Unique id made on the node; the server deduplicates on it.")
    type: EventType = Field(description="What happened.")
    severity: Severity = Field(description="critical, warning, info or clear.")
    node_id: str = Field(pattern=f"^{NODE_ID_PATTERN}$", description="The node that saw it.")
    pond_id: str = Field(min_length=1, max_length=64, description="The pond the node watches.")
    ts: datetime = Field(description="When it happened, ISO 8601 UTC.")
    track_id: int | None = Field(None, description="Tracker id of the person involved.")
    zone: str | None = Field(None, max_length=32, description="water or bank.")
    stature_m: float | None = Field(None, ge=0, le=4, description="Estimated body height.")
    possible_child: bool | None = Field(
        None, description="True when no calibration exists and every person counts as a child.")
    supervised: bool | None = Field(None, description="An adult stands beside the child.")
    child: bool | None = Field(
        None, description="person_in_water / person_submerged: the person is a child (model "
        "class or calibrated stature), False an adult, absent when not measurable.")
    item: str | None = Field(None, max_length=32, description="Equipment item.")
    reason: str | None = Field(None, max_length=200, description="Why (camera faults, ends).")
    ref: str | None = Field(None, max_length=64, description="Id of the event this one ends.")
    snapshot: bool = Field(False, description="A JPEG follows on the snapshot topic.")
    texted: bool = Field(False, description="The node already sent an SMS for this event.")
    boxes: list[tuple[float, float, float, float]] | None = Field(
        None, max_length=50, description="Critical events: every person box in the frame, "
        "normalised (x1, y1, x2, y2), for the learning loop.")
    frame: bool = Field(False, description="The unannotated frame follows as a JPEG on "
                        "node/{node}/snapshot/{id}-frame (learning loop).")

    _check_ts = field_validator("ts")(classmethod(lambda cls, v: _aware(v)))

    @field_validator("severity")
    @classmethod
    def _fixed_by_type(cls, value: Severity, info: ValidationInfo) -> Severity:
        """The severity is the one the type has (a `sos` is never `info`)."""
        kind = info.data.get("type")
        if kind is not None and value != (fixed := severity_of(kind)):
            raise ValueError(f"a {kind.value} event is {fixed.value}, not {value.value}")
        return value

    @classmethod
    def make(cls, type: EventType | str, node_id: str, pond_id: str,
             ts: datetime | None = None, **fields: Any) -> Event:
        """Build an event with a fresh id and the severity its type has."""
        event_type = EventType(type)
        return cls(type=event_type, severity=severity_of(event_type), node_id=node_id,
                   pond_id=pond_id, ts=ts or utc_now(), **fields)

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict sent on the event topic."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Status(StrictModel):
    """Retained node status; the Last Will says offline (with no reason: unplanned)."""

    state: Literal["online", "offline"]
    ts: datetime
    version: str = Field(max_length=40)
    reason: Literal["planned"] | None = Field(
        None, description="On offline: 'planned' when the node stopped cleanly (systemctl "
        "stop, a remote restart); absent when it was lost (the Last Will).")


class Health(BaseModel):
    """A heartbeat; known fields are typed, others are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    ts: datetime
    version: str = Field(max_length=40)
    uptime_s: float | None = None
    fps: float | None = None
    inference_ms: float | None = None
    cpu_percent: float | None = None
    temperature_c: float | None = None
    throttled: bool | None = None
    memory_percent: float | None = None
    disk_free_mb: float | None = None
    camera: str | None = None
    outbox_depth: int | None = None
    model: str | None = Field(None, description="Manifest name of the model, else its file.")
    model_format: str | None = Field(None, max_length=16,
                                     description="pytorch, onnx, openvino or ncnn.")
    model_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$",
                                     description="sha256 of the model file (export folder).")
    config_hash: str | None = None
    equipment: dict[str, str] | None = None
    interval_s: float | None = Field(
        None, gt=0, le=86400, description="Seconds until the next heartbeat (the server declares "
        "the node offline after three missed ones).")


class Ack(StrictModel):
    """Server → node: these event ids are committed; the node may forget them."""

    ids: list[str] = Field(max_length=1000)


class Command(StrictModel):
    """Server → node command with an expiry."""

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    cmd: str = Field(min_length=1, max_length=40)
    args: dict[str, Any] = Field(default_factory=dict)
    expires_at: datetime

    _check_exp = field_validator("expires_at")(classmethod(lambda cls, v: _aware(v)))


class CommandResult(StrictModel):
    """Node → server answer to one command."""

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    ok: bool
    result: Any = None
    ts: datetime


M = TypeVar("M", bound=BaseModel)


def json_depth(data: Any) -> int:
    """How deeply lists and objects nest in parsed JSON (a scalar is 0), without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            items: Any = value.values()
        elif isinstance(value, list):
            items = value
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((v, depth + 1) for v in items if isinstance(v, dict | list))
    return deepest


def decode(model: type[M], payload: bytes, limit: int = MAX_EVENT_BYTES) -> M:
    """Parse JSON bytes into model; raise PayloadError naming what is wrong (also for JSON
    nested deeper than MAX_JSON_DEPTH, which would otherwise exhaust the stack)."""
    if len(payload) > limit:
        raise PayloadError(f"{model.__name__} payload of {len(payload)} bytes exceeds {limit}")
    try:
        data = json.loads(payload)
    except RecursionError as exc:
        raise PayloadError(f"{model.__name__} payload nests deeper than {MAX_JSON_DEPTH}") from exc
    except ValueError as exc:  # not UTF-8, not JSON, or an integer too long to convert
        raise PayloadError(f"{model.__name__} payload is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PayloadError(f"{model.__name__} payload must be a JSON object")
    if json_depth(data) > MAX_JSON_DEPTH:
        raise PayloadError(f"{model.__name__} payload nests deeper than {MAX_JSON_DEPTH}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise PayloadError(field_errors(exc, model.__name__, top="payload")) from exc


def encode(payload: BaseModel) -> bytes:
    """Serialise a payload model to compact JSON bytes."""
    return payload.model_dump_json(by_alias=True, exclude_none=True).encode()
