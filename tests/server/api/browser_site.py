"""A running server with people of two grids and a technician, and headless Chromium pages on it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.config import NodeConfig
from edge.ops.remote import CommandHandler
from protocol.payloads import Command, Health, decode, encode
from server.access import auth, registry
from server.core.config import ServerConfig
from server.link.broker import Mosquitto
from server.runner import Server
from tests.server.conftest import FakeNode, PageReceiver

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
ROOT = Path(__file__).resolve().parents[3]
SHOTS = ROOT / "var" / "test-artifacts" / "screenshots"
JPEG = (Path(__file__).parent / "snapshot.jpg").read_bytes()
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True, "locale": "zh-CN"}
DESKTOP = {"viewport": {"width": 1280, "height": 800}, "locale": "zh-CN"}
PASSWORDS = {"guo": "guo-pass-123", "zhao": "zhao-pass-123", "viewer": "viewer-pass-1",
             "tech": "tech-pass-123", "admin": "admin-pass-123"}


def extra_registry(receiver: PageReceiver) -> str:
    """A third grid (西山) whose constable sees nothing of the other two."""
    return f"""
people:
  - {{id: zhao-lei, name: 赵磊, role: constable, notify: ["{receiver.url('zhao-lei')}"]}}
grids:
  - {{id: xishan, name: 西山网格, station: quanjiang, constable: zhao-lei}}
ponds:
  - {{id: xitang, name: 西塘, village: 西村, grid: xishan, lat: 26.36, lon: 114.56}}
nodes:
  - {{id: xitang-01, pond: xitang}}
"""


class NodeAnswerer:
    """The node's real command handler (edge.ops.remote) answering on cmd/result over MQTT."""

    def __init__(self, node: FakeNode, broker: Mosquitto, tmp: Path) -> None:
        """Subscribe the fake node to its command topic and answer with CommandHandler."""
        cfg = NodeConfig.model_validate({
            "node_id": node.node_id, "pond_id": "heyuan-shantang",
            "zones": {"water": [[0, 0.6], [1, 0.6], [1, 1]]},
            "camera": {"source": str(tmp / "no-camera.mp4")},
            "model": {"path": str(tmp / "no-model.pt")},
            "mqtt": {"url": broker.url}, "outbox": str(tmp / "node" / "outbox.db")})
        self.node = node
        self.handler = CommandHandler(cfg, str(tmp / "node.yaml"),
                                      actions={"snapshot": self._snapshot})
        self.seen: list[str] = []
        node.client.message_callback_add(node.topics.cmd(node.node_id), self._on_cmd)
        node.client.subscribe(node.topics.cmd(node.node_id), qos=1)

    def _snapshot(self, _args: dict[str, Any]) -> dict[str, Any]:
        """What the node service does: the current view as a JPEG on the snapshot topic."""
        snap_id = f"snap-{len(self.seen)}-{int(datetime.now(UTC).timestamp())}"
        self.node.client.publish(self.node.topics.snapshot(self.node.node_id, snap_id), JPEG,
                                 qos=1).wait_for_publish(5)
        return {"snapshot_id": snap_id, "bytes": len(JPEG)}

    def _on_cmd(self, _c: Any, _u: Any, msg: Any) -> None:
        """Hand the command to a worker (the handler blocks while it runs)."""
        cmd = decode(Command, bytes(msg.payload))
        self.seen.append(cmd.cmd)
        threading.Thread(target=self._answer, args=(cmd,), daemon=True).start()

    def _answer(self, cmd: Command) -> None:
        """Run and publish the result like the node service does."""
        res = self.handler.handle(cmd)
        if res is not None:
            self.node.client.publish(self.node.topics.cmd_result(self.node.node_id), encode(res),
                                     qos=1)


@dataclass
class Site:
    """The server, its broker and the fake nodes."""

    srv: Server
    broker: Mosquitto
    nodes: dict[str, FakeNode] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Base URL."""
        return self.srv.url

    def heartbeat(self, node_id: str, **fields: Any) -> None:
        """Publish one heartbeat of a node."""
        h = Health(ts=datetime.now(UTC), version="1.4.2", model="person-offline", **fields)
        node = self.nodes[node_id]
        node.publish(node.topics.health(node_id), encode(h))


def open_site(cfg: ServerConfig, receiver: PageReceiver, broker: Mosquitto,
              tmp: Path) -> Iterator[Site]:
    """Start the server, add the third grid and the users, connect the fake nodes."""
    extra = tmp / "extra.yaml"
    extra.write_text(extra_registry(receiver), encoding="utf-8")
    with Server(cfg) as srv:
        assert srv.services.ingest is not None and srv.services.ingest.connected.wait(10)
        registry.import_file(srv.services.sessions, extra)
        with srv.services.sessions() as s, s.begin():
            from server.core.db import Person
            tech = s.get(Person, "tech-wang")
            assert tech is not None
            tech.stations = ["quanjiang"]
            auth.set_user(s, "guo", PASSWORDS["guo"], "constable", "guo-yong")
            auth.set_user(s, "zhao", PASSWORDS["zhao"], "constable", "zhao-lei")
            auth.set_user(s, "viewer", PASSWORDS["viewer"], "viewer", "guo-yong")
            auth.set_user(s, "tech", PASSWORDS["tech"], "technician", "tech-wang")
            auth.set_user(s, "admin", PASSWORDS["admin"], "admin")
        site = Site(srv, broker)
        for nid in ("heyuan-01", "xitang-01"):
            site.nodes[nid] = FakeNode(broker, nid)
        try:
            yield site
        finally:
            for n in site.nodes.values():
                n.close()


def login(page: Any, site: Site, user: str) -> None:
    """Sign in through the login form like a person would."""
    from playwright.sync_api import expect
    page.goto(site.url + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.get_by_role("button", name="登录").click()
    expect(page.locator("#nav")).to_contain_text(user)


def shot(page: Any, name: str) -> Path:
    """A full-page screenshot into the test-artifact folder."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def csrf(page: Any) -> str:
    """The CSRF token the open page's forms carry."""
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    return str(token)


def json_of(resp: Any) -> Any:
    """The JSON body of a Playwright API response."""
    return json.loads(resp.text())
