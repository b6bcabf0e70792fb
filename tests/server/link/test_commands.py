"""Commands to a node over the real broker: id, expiry, message expiry, answer stored."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from protocol.limits import MAX_CMD_BYTES
from protocol.payloads import Command, CommandResult, encode
from protocol.topics import Topics
from server.access import auth
from server.core.db import CommandRow, Person
from server.link import commands
from server.runner import Server
from tests.server.conftest import FakeNode, PageReceiver, wait_for


def test_command_round_trip(config, receiver: PageReceiver, node: FakeNode) -> None:
    got: list[tuple[dict, int | None]] = []
    done = threading.Event()

    def on_cmd(_c, _u, msg) -> None:
        got.append((json.loads(msg.payload),
                    getattr(msg.properties, "MessageExpiryInterval", None)))
        done.set()

    node.client.message_callback_add(node.topics.cmd("heyuan-01"), on_cmd)
    node.client.subscribe(node.topics.cmd("heyuan-01"), qos=1)
    with Server(config) as srv:
        assert srv.services.ingest.connected.wait(10)
        with srv.services.sessions() as s, s.begin():
            s.get(Person, "tech-wang").stations = ["quanjiang"]
            auth.set_user(s, "tech", "tech-pass-12", "technician", "tech-wang")
            auth.set_user(s, "viewer", "viewer-pass-1", "viewer", "guo-yong")
        api = httpx.Client(base_url=srv.url, auth=("tech", "tech-pass-12"))
        assert api.post("/api/nodes/heyuan-01/commands", json={"cmd": "snapshot"},
                        auth=("viewer", "viewer-pass-1")).status_code == 403
        assert api.post("/api/nodes/ghost/commands", json={"cmd": "x"}).status_code == 404
        assert api.post("/api/nodes/heyuan-01/commands",
                        json={"cmd": "x", "ttl_s": 0}).status_code == 422
        r = api.post("/api/nodes/heyuan-01/commands",
                     json={"cmd": "horn_test", "args": {"seconds": 5}, "ttl_s": 120})
        assert r.status_code == 201
        cid = r.json()["id"]
        assert done.wait(10)
        payload, expiry = got[0]
        assert payload["id"] == cid and payload["cmd"] == "horn_test"
        assert payload["args"] == {"seconds": 5} and "expires_at" in payload
        assert expiry is not None and 0 < expiry <= 120
        node.publish(node.topics.cmd_result("heyuan-01"), encode(CommandResult(
            id=cid, ok=True, result="restarting", ts=datetime.now(UTC))))
        node.publish(node.topics.cmd_result("heyuan-01"), encode(CommandResult(
            id="nope", ok=True, ts=datetime.now(UTC))))
        rows = wait_for(lambda: [c for c in api.get("/api/nodes/heyuan-01/commands").json()
                                 if c["result_at"]], 10, "command result")
        assert rows[0]["ok"] is True and rows[0]["result"] == "restarting"
        wait_for(lambda: srv.services.metrics.registry.get_sample_value(
            "pondwatch_ingest_rejected_total", {"reason": "unknown_command"}), 10, "reject")
        api.close()


def test_command_without_broker_is_503(config, receiver: PageReceiver) -> None:
    from server.app import build

    app, svc = build(config)
    svc.prepare()
    with svc.sessions() as s, s.begin():
        s.get(Person, "tech-wang").stations = ["quanjiang"]
        auth.set_user(s, "tech", "tech-pass-12", "technician", "tech-wang")
    with TestClient(app) as c:
        r = c.post("/api/nodes/heyuan-01/commands", json={"cmd": "snapshot"},
                   auth=("tech", "tech-pass-12"))
        assert r.status_code == 503
    svc.stop()


def test_command_over_the_wire_limit_is_refused(config, receiver: PageReceiver) -> None:
    """A command the node would drop for its size (protocol MAX_CMD_BYTES) is never sent or
    stored: CommandTooLarge one byte over the limit; at the limit it fits. From the API,
    arguments that large are outside every operator command's schema (422)."""
    from server.app import build

    app, svc = build(config)
    svc.prepare()
    now = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
    base = {"name": "m", "sha256": "0" * 64, "size": 1, "url": "http://s/m"}
    empty = Command(id="0" * 32, cmd="model_update", args={**base, "signature": ""},
                    expires_at=now)
    fill = MAX_CMD_BYTES - len(encode(empty))
    with svc.sessions() as s:
        with pytest.raises(commands.CommandError, match="not connected"):  # fits: sent if it could
            commands.send(s, None, Topics(), "heyuan-01", "model_update",
                          {**base, "signature": "b" * fill}, 60, "t", now)
        with pytest.raises(commands.CommandTooLarge, match=f"{MAX_CMD_BYTES + 1} bytes"):
            commands.send(s, None, Topics(), "heyuan-01", "model_update",
                          {**base, "signature": "b" * (fill + 1)}, 60, "t", now)
    with svc.sessions() as s, s.begin():
        s.get(Person, "tech-wang").stations = ["quanjiang"]
        auth.set_user(s, "tech", "tech-pass-12", "technician", "tech-wang")
    with TestClient(app) as c:
        r = c.post("/api/nodes/heyuan-01/commands", json={"cmd": "snapshot", "args": {
            "blob": "b" * MAX_CMD_BYTES}}, auth=("tech", "tech-pass-12"))
        assert r.status_code == 422
    with svc.sessions() as s:
        assert s.scalar(select(func.count()).select_from(CommandRow)) == 0
    svc.stop()


@pytest.mark.parametrize(("body", "status"), [
    ({"cmd": "model_update", "args": {"name": "evil", "sha256": "0" * 64, "size": 1,
                                      "url": "http://127.0.0.1/evil.pt"}}, 403),
    ({"cmd": "logs", "args": {"lines": 50}}, 403),       # only the server's own code paths
    ({"cmd": "horn_test", "args": {"seconds": 600}}, 422),
    ({"cmd": "horn_test", "args": {"seconds": "loud"}}, 422),
    ({"cmd": "enrol", "args": {"frames": 2}}, 422),
    ({"cmd": "enrol", "args": {"frames": 16}}, 422),
    ({"cmd": "restart", "args": {"delay_s": 5}}, 422),
    ({"cmd": "selfdestruct"}, 422),
    ({"cmd": "horn_test", "args": {"seconds": 10}}, 503),  # valid: refused only for the broker
    ({"cmd": "enrol", "args": {"frames": 15, "every_s": 0.5}}, 503),
])
def test_api_commands_are_typed_bounded_and_limited_to_operator_names(
        config, receiver: PageReceiver, body: dict, status: int) -> None:
    from server.app import build

    app, svc = build(config)
    svc.prepare()
    with svc.sessions() as s, s.begin():
        auth.set_user(s, "root", "admin-pass-123", "admin", None)
    with TestClient(app) as c:
        r = c.post("/api/nodes/heyuan-01/commands", json=body, auth=("root", "admin-pass-123"))
        assert r.status_code == status, r.text
    with svc.sessions() as s:
        assert s.scalar(select(func.count()).select_from(CommandRow)) == 0
    now = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
    with svc.sessions() as s, pytest.raises(commands.CommandInvalid, match="seconds"):
        commands.send(s, None, Topics(), "heyuan-01", "horn_test", {"seconds": 11}, 60, "t", now)
    svc.stop()
