"""protocol.limits: the byte and depth limits decode enforces, and that the largest payloads a
node makes fit inside them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from protocol import (
    MAX_CMD_BYTES,
    MAX_EVENT_BYTES,
    MAX_HEALTH_BYTES,
    Command,
    Event,
    Health,
    PayloadError,
    decode,
    encode,
)
from protocol.limits import MAX_JSON_DEPTH

TS = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


def _health_of(size: int) -> bytes:
    """A heartbeat of exactly size bytes (padded in a field the node may add)."""
    bare = b'{"ts": "2026-07-01T08:00:00Z", "version": "1", "note": ""}'
    return bare[:-2] + b"x" * (size - len(bare)) + b'"}'


@pytest.mark.parametrize("limit", [MAX_EVENT_BYTES, MAX_HEALTH_BYTES, MAX_CMD_BYTES],
                         ids=["event", "health", "cmd"])
def test_a_payload_at_the_limit_decodes_and_one_byte_more_does_not(limit: int) -> None:
    assert decode(Health, _health_of(limit), limit=limit).version == "1"
    with pytest.raises(PayloadError, match=f"Health payload of {limit + 1} bytes exceeds {limit}"):
        decode(Health, _health_of(limit + 1), limit=limit)


def test_events_are_held_to_the_event_limit_by_default() -> None:
    """decode() without a limit uses MAX_EVENT_BYTES (16 KiB), before reading any JSON."""
    assert MAX_EVENT_BYTES == 16 * 1024
    with pytest.raises(PayloadError, match="exceeds 16384"):
        decode(Event, b"x" * (MAX_EVENT_BYTES + 1))


def test_commands_may_be_larger_than_events() -> None:
    """A model_update with its signature document: over 16 KiB is fine up to 64 KiB."""
    cmd = Command(id="c1", cmd="model_update", expires_at=TS,
                  args={"signature": {"payload": "p" * 30_000}})
    payload = encode(cmd)
    assert MAX_EVENT_BYTES < len(payload) <= MAX_CMD_BYTES
    assert decode(Command, payload, limit=MAX_CMD_BYTES) == cmd
    with pytest.raises(PayloadError, match="exceeds"):
        decode(Command, payload)


def _nested(depth: int) -> bytes:
    """A heartbeat whose JSON nests depth objects and lists deep (the object itself is 1)."""
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    return ('{"ts": "2026-07-01T08:00:00Z", "version": "1", "deep": ' + inner + "}").encode()


def test_nesting_is_limited_to_max_json_depth() -> None:
    assert decode(Health, _nested(MAX_JSON_DEPTH)).version == "1"
    with pytest.raises(PayloadError, match=f"nests deeper than {MAX_JSON_DEPTH}"):
        decode(Health, _nested(MAX_JSON_DEPTH + 1))


def test_nesting_deeper_than_the_interpreter_can_read_is_a_payload_error() -> None:
    """100 000 levels (allowed bytes) would raise RecursionError inside json; it is refused
    as a PayloadError like any other."""
    with pytest.raises(PayloadError, match=f"nests deeper than {MAX_JSON_DEPTH}"):
        decode(Health, _nested(100_000), limit=10**6)


def test_the_largest_event_a_node_makes_fits_the_event_limit() -> None:
    """Every field at its bound (ids of 64, reason of 200, 50 boxes of long floats): within
    MAX_EVENT_BYTES, so no node event is ever refused for its size."""
    box = (0.123456789012345, 0.223456789012345, 0.323456789012345, 0.423456789012345)
    ev = Event.make("person_submerged", "n" * 64, "p" * 64, ts=TS, id="i" * 64,
                    track_id=2**62, zone="z" * 32, stature_m=3.999999999999, possible_child=True,
                    supervised=True, child=True, item="k" * 32, reason="原因" * 100,
                    ref="r" * 64, repeat_of="q" * 64, snapshot=True, texted=True,
                    boxes=[box] * 50, frame=True)
    wire = json.dumps(ev.to_wire(), ensure_ascii=False).encode()
    assert len(wire) <= MAX_EVENT_BYTES
    assert decode(Event, wire) == ev
