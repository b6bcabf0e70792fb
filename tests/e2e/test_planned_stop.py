"""Planned stops: a node stopped cleanly says offline/planned and nobody is paged; a node
lost without a word (SIGKILL: the broker sends its Last Will) still opens a task."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from protocol import Status, encode
from scripts.page_receiver import PageReceiver
from server.core.db import Alert, Node
from server.link.broker import Mosquitto
from server.link.ingest import Inbound
from server.runner import Server
from tests.server.conftest import make_config, receiver  # noqa: F401  (fixture)
from tests.support import wait_for

from .test_link_faults import node_cfg

HERE = Path(__file__).resolve().parent
STATUS = "pondwatch/v1/node/heyuan-01/status"


def _node(srv: Server) -> tuple[str, str | None]:
    with srv.services.sessions() as s:
        n = s.get(Node, "heyuan-01")
        assert n is not None
        return n.state, n.state_reason


def _alerts(srv: Server) -> list[tuple[str, str]]:
    with srv.services.sessions() as s:
        return [(a.kind, a.state) for a in s.query(Alert).order_by(Alert.id)]


def _start(cfg_file: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(HERE / "node_proc.py"), str(cfg_file)])


def test_planned_stop_pages_nobody_a_lost_node_pages_the_technician(
        tmp_path: Path, mosquitto: Mosquitto, receiver: PageReceiver) -> None:  # noqa: F811
    cfg = node_cfg(tmp_path, mosquitto.port)  # keepalive 5 s: the Last Will within ~8 s
    cfg_file = tmp_path / "node.json"
    cfg_file.write_text(cfg.model_dump_json())
    with Server(make_config(tmp_path, receiver, mosquitto.url)) as srv:
        assert srv.services.ingest is not None and srv.services.ingest.connected.wait(10)
        node = _start(cfg_file)
        try:
            wait_for(lambda: _node(srv) == ("online", None), 20, "node online")
            node.send_signal(signal.SIGTERM)  # systemctl stop
            assert node.wait(10) == 0
            wait_for(lambda: _node(srv) == ("offline", "planned"), 10, "planned stop stored")

            node = _start(cfg_file)
            wait_for(lambda: _node(srv) == ("online", None), 20, "back online")
            node.send_signal(signal.SIGKILL)  # power cut: only the broker's Last Will speaks
            node.wait(10)
            wait_for(lambda: _node(srv) == ("offline", "lost"), 20, "loss noticed")
            receiver.wait(1)
            wait_for(lambda: ("node_offline", "notified") in _alerts(srv), 10, "task paged")
            # The lost node's task was opened and paged by the same escalator and pager after
            # the planned stop: a task or page from the planned stop would have come first.
            assert _alerts(srv) == [("node_offline", "notified")], "a planned stop opens no task"
            assert receiver.paths == ["/tech-wang"], "a planned stop pages nobody"
        finally:
            if node.poll() is None:
                node.kill()
                node.wait()


def test_a_retained_last_will_after_a_planned_stop_stays_planned(
        tmp_path: Path, receiver: PageReceiver) -> None:  # noqa: F811
    with Server(make_config(tmp_path, receiver, "mqtt://127.0.0.1:1")) as srv:
        ing = srv.services.ingest
        assert ing is not None
        now = datetime.now(UTC)

        def status(state: str, reason: str | None = None) -> None:
            ing.process(Inbound(STATUS, encode(Status(state=state, ts=now, version="1",
                                                      reason=reason)), 1, 1))
        status("online")
        status("offline", "planned")
        status("offline")  # the broker replays a retained offline without a reason
        assert _node(srv) == ("offline", "planned") and _alerts(srv) == []
        status("online")
        assert _node(srv) == ("online", None)
        status("offline")
        assert _node(srv) == ("offline", "lost")
        assert [k for k, _ in _alerts(srv)] == ["node_offline"]
