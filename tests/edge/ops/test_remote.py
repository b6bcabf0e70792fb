"""Remote commands: expiry, replay across restarts, built-in selftest and logs, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.config import NodeConfig
from edge.ops.remote import MAX_LOG_BYTES, CommandHandler, SeenIds, clip_lines
from protocol import MAX_CMD_BYTES, Command, CommandResult, encode
from tests.support import FakeClock

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


def make_cfg(tmp_path: Path, url: str = "mqtt://127.0.0.1:1", **health: Any) -> NodeConfig:
    return NodeConfig.model_validate({
        "node_id": "heyuan-01", "pond_id": "heyuan-shantang",
        "zones": {"water": [[0, 0.6], [1, 0.6], [1, 1]]},
        "camera": {"source": str(tmp_path / "no-camera.mp4")},
        "model": {"path": str(tmp_path / "no-model.pt")},
        "mqtt": {"url": url},
        "outbox": str(tmp_path / "state" / "outbox.db"), "health": health})


def cmd(name: str, cmd_id: str = "c1", ttl_s: float = 60, **args: Any) -> Command:
    return Command(id=cmd_id, cmd=name, args=args, expires_at=NOW + timedelta(seconds=ttl_s))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def handler(tmp_path: Path, clock: FakeClock, actions: dict[str, Any] | None = None,
            **health: Any) -> CommandHandler:
    return CommandHandler(make_cfg(tmp_path, **health), str(tmp_path / "node.yaml"),
                          actions=actions or {}, clock=clock)


def test_service_action_runs_and_answers(tmp_path: Path, clock: FakeClock) -> None:
    calls: list[dict[str, Any]] = []
    h = handler(tmp_path, clock, {"horn_test": lambda a: calls.append(a) or "ok"})
    res = h.handle(cmd("horn_test", seconds=2))
    assert isinstance(res, CommandResult)
    assert res.id == "c1" and res.ok and res.result == "ok"
    assert calls == [{"seconds": 2}]
    assert len(encode(res)) < MAX_CMD_BYTES
    assert "selftest" in h.known and "logs" in h.known and "horn_test" in h.known


def test_expired_command_is_ignored(tmp_path: Path, clock: FakeClock) -> None:
    calls: list[Any] = []
    h = handler(tmp_path, clock, {"restart": calls.append})
    clock.t += 61
    assert h.handle(cmd("restart")) is None
    assert calls == []


def test_replay_is_ignored_also_after_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    calls: list[Any] = []
    actions = {"restart": lambda a: calls.append(a) or "restarting"}
    assert handler(tmp_path, clock, actions).handle(cmd("restart")) is not None
    assert handler(tmp_path, clock, actions).handle(cmd("restart")) is None   # a new process
    assert len(calls) == 1
    seen = json.loads((tmp_path / "state" / "commands-seen.json").read_text())
    assert seen["seen"] == {"c1": (NOW + timedelta(seconds=60)).timestamp()}


def test_seen_ids_are_pruned_when_expired_and_bounded(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edge.ops.remote.MAX_SEEN", 20)
    seen = SeenIds(tmp_path / "seen.json")
    seen.add("old", 100.0, now=50.0)
    seen.add("new", 1000.0, now=500.0)         # "old" expired at 100: dropped
    assert "old" not in seen and "new" in seen
    for i in range(25):
        seen.add(f"id{i}", 2000.0 + i, now=600.0)
    assert len(seen) == 20 and "id4" not in seen and "id5" in seen and "id24" in seen
    assert "id24" in SeenIds(tmp_path / "seen.json")


def test_corrupt_seen_file_starts_empty(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "state" / "commands-seen.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    h = handler(tmp_path, clock, {"snapshot": lambda a: {"bytes": 1}})
    res = h.handle(cmd("snapshot"))
    assert res is not None and res.ok
    assert "c1" in json.loads(path.read_text())["seen"]


def test_unrecordable_command_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    (tmp_path / "blocker").write_text("a file, not a folder")
    calls: list[Any] = []
    h = CommandHandler(make_cfg(tmp_path), "node.yaml", actions={"restart": calls.append},
                       clock=clock, seen_path=str(tmp_path / "blocker" / "seen.json"))
    res = h.handle(cmd("restart"))
    assert res is not None and not res.ok and "cannot record" in res.result["error"]
    assert calls == []


def test_too_far_in_the_future_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    res = handler(tmp_path, clock).handle(cmd("logs", ttl_s=3 * 86400))
    assert res is not None and not res.ok and "ahead" in res.result["error"]


def test_unknown_and_failing_commands(tmp_path: Path, clock: FakeClock) -> None:
    def broken(args: dict[str, Any]) -> Any:
        raise RuntimeError("no frame yet")
    h = handler(tmp_path, clock, {"snapshot": broken, "restart": lambda a: object()})
    res = h.handle(cmd("selfdestruct", "c1"))
    assert res is not None and not res.ok
    assert res.result["error"] == "unknown command 'selfdestruct'"
    assert "selftest" in res.result["known"]
    res = h.handle(cmd("snapshot", "c2"))
    assert res is not None and not res.ok and res.result == {"error": "RuntimeError: no frame yet"}
    res = h.handle(cmd("restart", "c3"))           # not JSON: sent as text
    assert res is not None and res.ok and isinstance(res.result, str)


def test_selftest_runs_the_diag_checks(tmp_path: Path, clock: FakeClock) -> None:
    (tmp_path / "node.yaml").write_text("node_id: heyuan-01\n")   # incomplete on disk
    res = handler(tmp_path, clock).handle(cmd("selftest"))
    assert res is not None and res.ok is False
    checks = {c["name"]: c for c in res.result["checks"]}
    assert set(checks) == {"config", "model", "zones", "broker", "disk", "temperature",
                           "clock", "outbox"}            # camera and GPIO belong to the service
    assert res.result["skipped"] == ["camera", "gpio"]
    assert not checks["config"]["ok"] and not checks["model"]["ok"]
    assert not checks["broker"]["ok"] and checks["broker"]["hint"]
    assert checks["outbox"]["ok"] and checks["zones"]["ok"]
    assert len(encode(res)) < MAX_CMD_BYTES


def test_full_selftest_includes_camera(tmp_path: Path, clock: FakeClock) -> None:
    res = handler(tmp_path, clock).handle(cmd("selftest", full=True))
    assert res is not None
    names = [c["name"] for c in res.result["checks"]]
    assert "camera" in names and "gpio" in names and res.result["skipped"] == []


def test_logs_from_the_log_file(tmp_path: Path, clock: FakeClock) -> None:
    log_file = tmp_path / "edge.log"
    log_file.write_text("".join(f"line {i}\n" for i in range(1000)))
    h = handler(tmp_path, clock, log_file=str(log_file))
    res = h.handle(cmd("logs", "c1", lines=5))
    assert res is not None and res.ok
    if res.result["source"] == "file":            # no journal here: the file is used
        assert res.result["lines"] == [f"line {i}" for i in range(995, 1000)]
    res = h.handle(cmd("logs", "c2", lines="many"))
    assert res is not None and not res.ok and "field lines" in res.result["error"]


def test_logs_with_nothing_to_read(tmp_path: Path, clock: FakeClock,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))      # no journalctl
    res = handler(tmp_path, clock, log_file=str(tmp_path / "missing.log")).handle(cmd("logs"))
    assert res is not None and not res.ok and res.result["lines"] == []


def test_log_lines_are_clipped_to_fit_a_message() -> None:
    lines = ["x" * 1000] * 200
    out = clip_lines(lines)
    assert all(len(ln) == 400 for ln in out)
    assert sum(len(ln) + 4 for ln in out) <= MAX_LOG_BYTES


def test_commands_through_mosquitto_and_the_node_link(tmp_path: Path, mosquitto: Any) -> None:
    """Server → cmd topic → NodeLink → CommandHandler → cmd/result, with a replay ignored."""
    import threading
    import time as _time

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edge.link.mqtt import NodeLink
    from edge.link.outbox import Outbox
    from protocol import Topics, decode

    cfg = make_cfg(tmp_path, mosquitto.url)
    h = CommandHandler(cfg, str(tmp_path / "node.yaml"),
                       actions={"horn_test": lambda a: {"seconds": a.get("seconds", 2)}})
    box = Outbox(cfg.outbox)
    link = NodeLink(cfg, box, on_command=h.handle)
    topics = Topics()
    results: list[CommandResult] = []
    got = threading.Event()
    server = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-server",
                         protocol=mqtt.MQTTv5)

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        results.append(decode(CommandResult, msg.payload))
        got.set()
    server.on_message = on_message
    server.connect("127.0.0.1", mosquitto.port)
    server.subscribe(topics.cmd_result("heyuan-01"), qos=1)
    server.loop_start()
    link.start()
    try:
        assert link.connected.wait(10)

        def send(c: Command) -> None:
            server.publish(topics.cmd("heyuan-01"), encode(c), qos=1)

        def wait_for(n: int) -> None:
            deadline = _time.monotonic() + 30
            while len(results) < n and _time.monotonic() < deadline:
                got.wait(0.1)
                got.clear()

        live = datetime.now(UTC) + timedelta(minutes=5)
        # The node's cmd subscription lands just after CONNACK: ping until one answer comes.
        # Pings sent after the first answered one are all answered, in order: wait for the last.
        for i in range(100):
            send(Command(id=f"warm{i}", cmd="horn_test", args={}, expires_at=live))
            if got.wait(0.2):
                break
        deadline = _time.monotonic() + 10
        while f"warm{i}" not in [r.id for r in results] and _time.monotonic() < deadline:
            got.wait(0.1)
            got.clear()
        results.clear()
        got.clear()
        send(Command(id="h1", cmd="horn_test", args={"seconds": 1}, expires_at=live))
        wait_for(1)
        assert results[0].id == "h1" and results[0].ok and results[0].result == {"seconds": 1}
        send(Command(id="h1", cmd="horn_test", args={}, expires_at=live))       # replay
        gone = live - timedelta(minutes=10)
        send(Command(id="old", cmd="horn_test", args={}, expires_at=gone))      # expired
        send(Command(id="st", cmd="selftest", args={}, expires_at=live))
        wait_for(2)
        assert [r.id for r in results] == ["h1", "st"]      # replay and expired: no answer
        checks = {c["name"]: c for c in results[1].result["checks"]}
        assert checks["broker"]["ok"], checks["broker"]      # the round trip really worked
    finally:
        link.stop()
        server.loop_stop()
        server.disconnect()
        box.close()


@pytest.mark.parametrize(("name", "args", "field"), [
    ("horn_test", {"seconds": 600}, "seconds"),        # a horn for ten minutes
    ("horn_test", {"seconds": "loud"}, "seconds"),
    ("enrol", {"frames": 2}, "frames"),
    ("enrol", {"frames": 10_000}, "frames"),
    ("logs", {"lines": 10**9}, "lines"),
    ("snapshot", {"path": "/etc/shadow"}, "path"),
])
def test_arguments_outside_the_schema_are_refused_on_the_node(
        tmp_path: Path, clock: FakeClock, name: str, args: dict[str, Any], field: str) -> None:
    calls: list[Any] = []
    h = handler(tmp_path, clock, {name: calls.append})
    res = h.handle(cmd(name, **args))
    assert res is not None and not res.ok and f"field {field}" in res.result["error"]
    assert calls == [], "the action never ran"
    ok = h.handle(cmd("horn_test", "c2", seconds=10))
    assert ok is not None and ok.ok or name != "horn_test"


def test_command_names_are_logged_with_repr(tmp_path: Path, clock: FakeClock,
                                            caplog: pytest.LogCaptureFixture) -> None:
    h = handler(tmp_path, clock, {"restart": lambda a: "ok"})
    forged = "restart\nINFO fake line"
    clock.t += 61
    assert h.handle(cmd(forged)) is None  # expired
    clock.t -= 61
    assert h.handle(cmd("restart", "c2")) is not None
    assert h.handle(cmd(forged, "c2")) is None  # replay
    texts = [r.getMessage() for r in caplog.records]
    assert texts and all("\n" not in t for t in texts), texts
