"""protocol.topics: every topic the contract names is built and parsed back; anything else is
refused with a TopicError naming what is wrong."""

from __future__ import annotations

import pytest

from protocol.topics import (
    NODE_ID_PATTERN,
    Topic,
    TopicError,
    Topics,
    check_node_id,
    frame_id,
    frame_of,
    requested_snapshot_id,
)

T = Topics()
NODE = "heyuan-01"
EVENT = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("prefix", ["pondwatch/v1", "county/test/pondwatch/v1"])
def test_every_topic_parses_back_to_what_built_it(prefix: str) -> None:
    """Builders and parser agree for each kind, under the default and a custom prefix."""
    t = Topics(prefix)
    root = f"{prefix}/node/{NODE}"
    built = {
        t.status(NODE): (f"{root}/status", Topic(NODE, "status")),
        t.event(NODE): (f"{root}/event", Topic(NODE, "event")),
        t.snapshot(NODE, EVENT): (f"{root}/snapshot/{EVENT}", Topic(NODE, "snapshot", EVENT)),
        t.frame(NODE, EVENT): (f"{root}/snapshot/{EVENT}-frame",
                               Topic(NODE, "snapshot", f"{EVENT}-frame")),
        t.health(NODE): (f"{root}/health", Topic(NODE, "health")),
        t.ack(NODE): (f"{root}/ack", Topic(NODE, "ack")),
        t.cmd(NODE): (f"{root}/cmd", Topic(NODE, "cmd")),
        t.cmd_result(NODE): (f"{root}/cmd/result", Topic(NODE, "cmd/result")),
    }
    for topic, (expected, parsed) in built.items():
        assert topic == expected
        assert t.parse(topic) == parsed
    assert t.all_nodes("event") == f"{prefix}/node/+/event"
    assert t.all_nodes() == f"{prefix}/node/+/#"


@pytest.mark.parametrize("event_id", ["a", "A_b-9", EVENT, "x" * 64, "e" * 58 + "-frame"])
def test_the_frame_of_any_valid_event_id_travels_and_comes_back(event_id: str) -> None:
    """The unannotated frame's topic exists for every event id the contract allows (up to 64
    characters) and parses back to its event."""
    topic = T.frame(NODE, event_id)
    parsed = T.parse(topic)
    assert parsed.event_id == frame_id(event_id)
    assert parsed.event_id is not None and frame_of(parsed.event_id) == event_id


def test_a_requested_snapshot_is_a_snapshot_of_no_event() -> None:
    """`snap-<uuid4 hex>`: fresh each time, a valid snapshot id, not a frame."""
    a, b = requested_snapshot_id(), requested_snapshot_id()
    assert a != b and a.startswith("snap-") and len(a) == 5 + 32
    assert T.parse(T.snapshot(NODE, a)) == Topic(NODE, "snapshot", a)
    assert frame_of(a) is None


@pytest.mark.parametrize("node", ["a", "0", "heyuan-01", "x" * 64, "pondwatch2", "pondwatchers",
                                  "a-pondwatch"])
def test_node_ids_the_contract_allows(node: str) -> None:
    assert check_node_id(node) == node
    assert T.parse(T.event(node)).node_id == node


@pytest.mark.parametrize(("node", "why"), [
    ("", "does not match"),
    ("Heyuan-01", "does not match"),
    ("heyuan_01", "does not match"),
    ("-heyuan", "does not match"),
    ("x" * 65, "does not match"),
    ("heyuan 01", "does not match"),
    ("+", "does not match"),
    ("#", "does not match"),
    ("héyuan", "does not match"),
    ("heyuan-01\n", "does not match"),
    ("pondwatch", "is reserved"),
    ("pondwatch-server", "is reserved"),
    ("pondwatch-server-2", "is reserved"),
])
def test_bad_node_ids_are_refused_by_name(node: str, why: str) -> None:
    """Builders and the parser refuse the node id, quoting it and saying why."""
    with pytest.raises(TopicError, match=why) as built:
        T.event(node)
    assert repr(node) in str(built.value)
    if "/" not in node:
        with pytest.raises(TopicError, match=why):
            T.parse(f"pondwatch/v1/node/{node}/event")
    if why == "does not match":
        assert NODE_ID_PATTERN in str(built.value)


@pytest.mark.parametrize(("topic", "why"), [
    ("pondwatch/v2/node/heyuan-01/event", "is not under pondwatch/v1/node/"),
    ("other/pondwatch/v1/node/heyuan-01/event", "is not under pondwatch/v1/node/"),
    ("pondwatch/v1/heyuan-01/event", "is not under pondwatch/v1/node/"),
    ("pondwatch/v1/node/heyuan-01", "unknown kind ''"),
    ("pondwatch/v1/node/heyuan-01/", "unknown kind ''"),
    ("pondwatch/v1/node/heyuan-01/alarm", "unknown kind 'alarm'"),
    ("pondwatch/v1/node/heyuan-01/event/extra", "unknown kind 'event/extra'"),
    ("pondwatch/v1/node/heyuan-01/cmd/result/x", "unknown kind 'cmd/result/x'"),
    ("pondwatch/v1/node/heyuan-01/snapshot", "unknown kind 'snapshot'"),
    ("pondwatch/v1/node/heyuan-01/snapshot/a/b", "unknown kind 'snapshot/a/b'"),
    ("pondwatch/v1/node/heyuan-01/snapshot/", "invalid event id"),
    ("pondwatch/v1/node/heyuan-01/snapshot/a.b", "invalid event id"),
    ("pondwatch/v1/node/heyuan-01/snapshot/" + "x" * 65, "invalid event id"),
    ("pondwatch/v1/node/heyuan-01/snapshot/" + "x" * 65 + "-frame", "invalid event id"),
    ("pondwatch/v1/node/heyuan-01/snapshot/abc\n", "invalid event id"),
    ("pondwatch/v1/node/heyuan-01/snapshot/+", "invalid event id"),
    ("pondwatch/v1/node/+/event", "does not match"),
    ("pondwatch/v1/node//event", "does not match"),
])
def test_foreign_topics_are_refused_saying_why(topic: str, why: str) -> None:
    with pytest.raises(TopicError, match=why.replace("+", r"\+")):
        T.parse(topic)


@pytest.mark.parametrize("event_id", ["", "a b", "a/b", "x" * 65, "x" * 65 + "-frame", "../x",
                                      "é", "abc\n"])
def test_a_snapshot_topic_needs_a_valid_event_id(event_id: str) -> None:
    with pytest.raises(TopicError, match="is not a valid id"):
        T.snapshot(NODE, event_id)


def test_topic_error_is_a_value_error() -> None:
    """Callers that catch ValueError (config checks) catch it too."""
    assert issubclass(TopicError, ValueError)
