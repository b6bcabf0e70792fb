"""protocol.payloads: strict decoding. Every payload round-trips; unknown fields, wrong types,
bad ids and unreadable JSON are refused with a PayloadError naming what is wrong."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from protocol import (
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

TS = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


def _event(**over: Any) -> dict[str, Any]:
    """A valid event on the wire, with fields replaced (None: left out)."""
    wire = {"schema": 1, "id": "ev-1", "type": "person_in_water", "severity": "critical",
            "node_id": "heyuan-01", "pond_id": "heyuan-shantang", "ts": "2026-07-01T08:00:00Z",
            "track_id": 3, "zone": "water", "stature_m": 1.1, "child": True}
    wire.update(over)
    return {k: v for k, v in wire.items() if v is not None}


def _refused(model: type[BaseModel], data: Any, *needles: str) -> str:
    """Decode must refuse data; the message names the model and every needle."""
    payload = data if isinstance(data, bytes) else json.dumps(data).encode()
    with pytest.raises(PayloadError) as err:
        decode(model, payload)
    message = str(err.value)
    assert message.startswith(model.__name__), message
    for needle in needles:
        assert needle in message, message
    return message


@pytest.mark.parametrize("payload", [
    Event.make("sos", "heyuan-01", "p", ts=TS, reason="button"),
    Status(state="offline", ts=TS, version="1.2.3", reason="planned"),
    Health(ts=TS, version="1.2.3", fps=4.9, equipment={"lifebuoy": "present"}, interval_s=60),
    Ack(ids=["a", "b"]),
    Command(id="c1", cmd="horn_test", args={"seconds": 2}, expires_at=TS),
    CommandResult(id="c1", ok=True, result={"lines": ["x"]}, ts=TS),
])
def test_every_payload_round_trips(payload: BaseModel) -> None:
    assert decode(type(payload), encode(payload)) == payload


def test_the_wire_event_uses_the_contract_names() -> None:
    """`schema` (not schema_), UTC timestamps, unset optional fields left out."""
    wire = json.loads(encode(Event.make("sos", "heyuan-01", "p", ts=TS, id="ev-1")))
    assert wire["schema"] == 1 and "schema_" not in wire
    assert wire["ts"] == "2026-07-01T08:00:00Z"
    assert "track_id" not in wire and "stature_m" not in wire
    assert Event.make("sos", "heyuan-01", "p", ts=TS, id="ev-1").to_wire() == wire


def test_an_event_keeps_fields_added_later() -> None:
    """Events (and heartbeats) allow fields a newer node adds; they travel on unchanged."""
    ev = decode(Event, json.dumps(_event(repeat_of="ev-0", new_field=[1, 2])).encode())
    assert ev.to_wire()["repeat_of"] == "ev-0" and ev.to_wire()["new_field"] == [1, 2]
    health = decode(Health, b'{"ts": "2026-07-01T08:00:00Z", "version": "1", "vouching": true}')
    assert health.model_dump()["vouching"] is True


@pytest.mark.parametrize(("model", "data", "field"), [
    (Ack, {"ids": [], "all": True}, "all"),
    (Status, {"state": "online", "ts": "2026-07-01T08:00:00Z", "version": "1", "why": "x"},
     "why"),
    (Command, {"id": "c1", "cmd": "restart", "expires_at": "2026-07-01T08:00:00Z", "sudo": 1},
     "sudo"),
    (CommandResult, {"id": "c1", "ok": True, "ts": "2026-07-01T08:00:00Z", "extra": 1},
     "extra"),
])
def test_strict_payloads_refuse_unknown_fields_by_name(model: type[BaseModel],
                                                       data: dict[str, Any], field: str) -> None:
    _refused(model, data, f"field {field}: Extra inputs are not permitted")


@pytest.mark.parametrize(("over", "field", "why"), [
    ({"type": None}, "type", "Field required"),
    ({"ts": None}, "ts", "Field required"),
    ({"type": "person_flying"}, "type", "Input should be"),
    ({"schema": 2}, "schema", "Input should be 1"),
    ({"severity": "info"}, "severity", "a person_in_water event is critical, not info"),
    ({"type": "sos", "severity": "warning"}, "severity", "a sos event is critical, not warning"),
    ({"ts": "2026-07-01T08:00:00"}, "ts", "must carry a timezone"),
    ({"ts": "yesterday"}, "ts", "valid datetime"),
    ({"id": ""}, "id", "should match pattern"),
    ({"id": "ev 1"}, "id", "should match pattern"),
    ({"id": "x" * 65}, "id", "should match pattern"),
    ({"id": 7}, "id", "valid string"),
    ({"node_id": "Heyuan-01"}, "node_id", "should match pattern"),
    ({"node_id": "heyuan_01"}, "node_id", "should match pattern"),
    ({"node_id": "x" * 65}, "node_id", "should match pattern"),
    ({"node_id": "heyuan-01\n"}, "node_id", "should match pattern"),
    ({"pond_id": ""}, "pond_id", "at least 1 character"),
    ({"pond_id": "p" * 65}, "pond_id", "at most 64 characters"),
    ({"track_id": "seven"}, "track_id", "valid integer"),
    ({"track_id": 1.5}, "track_id", "valid integer"),
    ({"stature_m": 5}, "stature_m", "less than or equal to 4"),
    ({"stature_m": -0.1}, "stature_m", "greater than or equal to 0"),
    ({"zone": "z" * 33}, "zone", "at most 32 characters"),
    ({"reason": "r" * 201}, "reason", "at most 200 characters"),
    ({"child": {"yes": 1}}, "child", "valid boolean"),
    ({"snapshot": [True]}, "snapshot", "valid boolean"),
    ({"boxes": [[0, 0, 1, 1]] * 51}, "boxes", "at most 50 items"),
    ({"boxes": [[0, 0, 1]]}, "boxes.0.3", "Field required"),
    ({"boxes": "all"}, "boxes", "valid list"),
])
def test_a_bad_event_is_refused_naming_the_field(over: dict[str, Any], field: str,
                                                 why: str) -> None:
    _refused(Event, _event(**over), f"Event field {field}: ", why)


@pytest.mark.parametrize(("model", "data", "field", "why"), [
    (Status, {"state": "maybe", "ts": "2026-07-01T08:00:00Z", "version": "1"}, "state",
     "'online' or 'offline'"),
    (Status, {"state": "offline", "ts": "2026-07-01T08:00:00Z", "version": "1",
              "reason": "crashed"}, "reason", "'planned'"),
    (Status, {"state": "online", "ts": "2026-07-01T08:00:00Z", "version": "v" * 41}, "version",
     "at most 40 characters"),
    (Health, {"ts": "2026-07-01T08:00:00Z", "version": "1", "model_sha256": "ABC"},
     "model_sha256", "should match pattern"),
    (Health, {"ts": "2026-07-01T08:00:00Z", "version": "1", "interval_s": 0}, "interval_s",
     "greater than 0"),
    (Health, {"ts": "2026-07-01T08:00:00Z", "version": "1", "equipment": ["lifebuoy"]},
     "equipment", "valid dictionary"),
    (Ack, {"ids": "ev-1"}, "ids", "valid list"),
    (Ack, {"ids": [1]}, "ids.0", "valid string"),
    (Ack, {"ids": ["x"] * 1001}, "ids", "at most 1000 items"),
    (Ack, {}, "ids", "Field required"),
    (Command, {"id": "c1", "cmd": "restart", "expires_at": "2026-07-01T08:00:00"},
     "expires_at", "must carry a timezone"),
    (Command, {"id": "c1", "cmd": "", "expires_at": "2026-07-01T08:00:00Z"}, "cmd",
     "at least 1 character"),
    (Command, {"id": "c1", "cmd": "c" * 41, "expires_at": "2026-07-01T08:00:00Z"}, "cmd",
     "at most 40 characters"),
    (Command, {"id": "c/1", "cmd": "restart", "expires_at": "2026-07-01T08:00:00Z"}, "id",
     "should match pattern"),
    (Command, {"id": "c1", "cmd": "restart", "args": [], "expires_at": "2026-07-01T08:00:00Z"},
     "args", "valid dictionary"),
    (CommandResult, {"id": "c1", "ok": "perhaps", "ts": "2026-07-01T08:00:00Z"}, "ok",
     "valid boolean"),
])
def test_other_bad_payloads_are_refused_naming_the_field(
        model: type[BaseModel], data: dict[str, Any], field: str, why: str) -> None:
    _refused(model, data, f"field {field}: ", why)


@pytest.mark.parametrize(("payload", "why"), [
    (b"", "is not JSON"),
    (b"ids: [a]", "is not JSON"),
    (b'{"ids": []', "is not JSON"),
    (b"\xff\xfe{}", "is not JSON"),
    (b'{"ids": [1' + b"0" * 5000 + b"]}", "is not JSON"),
    (b"[]", "must be a JSON object"),
    (b'"ids"', "must be a JSON object"),
    (b"null", "must be a JSON object"),
])
def test_unreadable_payloads_are_payload_errors(payload: bytes, why: str) -> None:
    """Never a bare ValueError or RecursionError: callers catch PayloadError only."""
    _refused(Ack, payload, why)


def test_every_event_type_has_its_fixed_severity() -> None:
    """The severities of design.md's event list; Event.make never mismatches them."""
    expected = {"person_submerged": "critical", "child_near_water": "critical",
                "person_in_water": "critical", "sos": "critical",
                "equipment_missing": "warning", "camera_fault": "warning",
                "person_near_water": "info", "event_end": "clear",
                "equipment_restored": "clear", "camera_ok": "clear"}
    assert {t.value: severity_of(t).value for t in EventType} == expected
    for kind in EventType:
        ev = Event.make(kind, "heyuan-01", "p")
        assert decode(Event, encode(ev)).severity == Severity(expected[kind.value])
