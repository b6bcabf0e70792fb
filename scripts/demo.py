"""The PondWatch demo: server + private Mosquitto + a node replaying a clip + a page receiver."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.vision.offline import ultralytics_offline  # noqa: E402
from scripts.page_receiver import PageReceiver  # noqa: E402
from server.core.config import parse_config  # noqa: E402
from server.link.broker import free_port  # noqa: E402
from server.runner import Server  # noqa: E402

log = logging.getLogger("demo")
LINK_RE = re.compile(r"https?://[^\s]+/a/[A-Za-z0-9_.-]+")
SCENE = "child_to_bank"


def registry(receiver_url: str, node_id: str, pond_id: str) -> dict[str, Any]:
    """The demo county: one station, one grid, one pond with its node, a constable and backup."""
    return {
        "stations": [{"id": "quanjiang", "name": "泉江派出所", "duty_desk": ["duty-quanjiang"],
                      "area_officers": ["liu-min"]}],
        "grids": [{"id": "gongyu", "name": "共裕网格", "station": "quanjiang",
                   "constable": "guo-yong", "backup": "kang-donghai"}],
        "ponds": [{"id": pond_id, "name": "禾源山塘", "village": "禾源村", "grid": "gongyu",
                   "lat": 26.33, "lon": 114.52}],
        "nodes": [{"id": node_id, "pond": pond_id}],
        "people": [
            {"id": "guo-yong", "name": "郭勇", "role": "constable", "phone": "+8613800000000",
             "notify": [receiver_url]},
            {"id": "kang-donghai", "name": "康东海", "role": "constable", "phone": "+8613800000001",
             "notify": [receiver_url.replace("/page", "/backup")]},
            {"id": "liu-min", "name": "刘敏", "role": "area_officer", "phone": "+8613800000002",
             "notify": [receiver_url.replace("/page", "/officer")]},
            {"id": "duty-quanjiang", "name": "泉江所值班台", "role": "duty_desk",
             "phone": "+8679600000000", "notify": [receiver_url.replace("/page", "/duty")]},
        ],
    }


@dataclass
class DemoStack:
    """Everything the demo runs, started in order and stopped in reverse."""

    workdir: Path
    model: Path | None = None
    scenes: Path | None = None
    receiver: PageReceiver = field(default_factory=PageReceiver)
    server: Server | None = None
    node: subprocess.Popen[bytes] | None = None
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(9))
    node_cfg: dict[str, Any] = field(default_factory=dict)
    model_keys: list[str] = field(default_factory=list)  # the server's models.trusted_keys

    def make_clip(self) -> Path:
        """Generate (or reuse) the demo clip and its node config from real photos."""
        scenes = self.scenes or self.workdir / "scenes"
        if not (scenes / f"{SCENE}.yaml").exists():
            cmd = [sys.executable, str(ROOT / "scripts" / "make_scenes.py"), str(scenes),
                   "--only", SCENE]
            if self.model:
                cmd += ["--model", str(self.model)]
            subprocess.run(cmd, check=True, cwd=ROOT)
        return scenes / f"{SCENE}.yaml"

    def start_server(self) -> Server:
        """The server with a private Mosquitto (no broker URL configured) and the registry."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        key = self.workdir / "secret.key"
        if not key.exists():
            key.write_text(secrets.token_urlsafe(32))
            key.chmod(0o600)
        clip_cfg = self.make_clip()
        node_yaml = yaml.safe_load(clip_cfg.read_text(encoding="utf-8"))
        node_yaml.update(node_id="heyuan-01", pond_id="heyuan-shantang")
        for section, name in (("camera", "source"), ("model", "path")):
            value = Path(str(node_yaml[section][name]))
            if not value.is_absolute():
                node_yaml[section][name] = str(clip_cfg.parent / value)
        reg = self.workdir / "registry.yaml"
        reg.write_text(yaml.safe_dump(registry(self.receiver.url(), node_yaml["node_id"],
                                               node_yaml["pond_id"]), allow_unicode=True))
        port = free_port()
        os.environ["PONDWATCH_ADMIN_PASSWORD"] = self.admin_password
        cfg = parse_config({
            "environment": "production",
            "secret_key_file": str(key),
            "database": f"sqlite:///{self.workdir / 'server.db'}",
            "http": {"bind": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"},
            "mqtt": {"data_dir": str(self.workdir / "mosquitto")},
            "registry": str(reg),
            "models": {"trusted_keys": self.model_keys},
        })
        self.server = Server(cfg).start()
        if not self.server.services.ingest or not self.server.services.ingest.connected.wait(15):
            raise RuntimeError("server did not connect to its private broker")
        self.node_cfg = node_yaml
        return self.server

    def start_node(self) -> subprocess.Popen[bytes]:
        """pondwatch-edge run on the clip, against the server's private broker."""
        assert self.server is not None
        cfg = dict(self.node_cfg)
        sup = self.server.services.supervisor
        assert sup is not None, "the demo runs on the private (locked) broker"
        cfg["mqtt"] = dict(cfg.get("mqtt") or {}, url=sup.url, password_file=str(
            sup.credentials.password_file(cfg["node_id"])))
        cfg["outbox"] = str(self.workdir / "node-outbox.db")
        path = self.workdir / "node.yaml"
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
        exe = Path(sys.executable).with_name("pondwatch-edge")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "edge.cli"]
        # the technician's step at installation: enrol the rescue kit from the camera's view
        subprocess.run([*cmd, "enrol", str(path), "--source", cfg["camera"]["source"]],
                       check=True, cwd=ROOT)
        self.node = subprocess.Popen([*cmd, "run", str(path)], cwd=ROOT)
        return self.node

    def wait_page(self, timeout: float = 120.0) -> tuple[dict[str, Any], str]:
        """The constable's first page and the acknowledge link in it."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(AssertionError):
                self.receiver.wait(1, timeout=1.0)
            if self.node is not None and self.node.poll() not in (None, 0):
                raise RuntimeError(f"the node exited with {self.node.returncode}")
            rec = self.receiver
            for page, path, received in zip(list(rec.pages), list(rec.paths),
                                            list(rec.received), strict=False):
                m = LINK_RE.search(page.get("message", ""))
                if path == "/page" and m:
                    return dict(page, _received=received), m.group(0)
            if time.monotonic() > deadline:
                raise TimeoutError("no page with an acknowledge link for the constable")
            time.sleep(0.1)

    def api(self) -> httpx.Client:
        """An HTTP client logged in as the demo admin (HTTP Basic)."""
        assert self.server is not None
        return httpx.Client(base_url=self.server.url, auth=("admin", self.admin_password))

    def stop(self) -> None:
        """Stop node, server and receiver; safe twice."""
        if self.node is not None and self.node.poll() is None:
            self.node.send_signal(signal.SIGTERM)
            try:
                self.node.wait(15)
            except subprocess.TimeoutExpired:
                self.node.kill()
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.receiver.close()


def event_latency(stack: DemoStack, page: dict[str, Any]) -> float | None:
    """Seconds from the node's event timestamp to the page's arrival."""
    with stack.api() as c:
        alerts = c.get("/api/alerts").json()
        if not alerts:
            return None
        detail = c.get(f"/api/alerts/{alerts[-1]['id']}").json()
    events = detail.get("events") or []
    if not events:
        return None
    ts = events[0]["ts"]  # the node's own timestamp of the event
    return float(page["_received"]) - datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def main(argv: list[str] | None = None) -> int:
    """Run the demo; with --auto-ack, acknowledge by the link and exit when verified."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workdir", default=str(ROOT / "var" / "demo"), help="state folder")
    p.add_argument("--auto-ack", action="store_true",
                   help="acknowledge through the link, check the dashboard, then exit")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ultralytics_offline()  # the node subprocess inherits it
    stack = DemoStack(Path(args.workdir))
    try:
        srv = stack.start_server()
        print(f"\nPondWatch dashboard: {srv.url}/   (user admin, password {stack.admin_password})",
              flush=True)
        print(f"page receiver: {stack.receiver.url()}", flush=True)
        stack.start_node()
        page, link = stack.wait_page()
        lat = event_latency(stack, page)
        print(f"\npage received: {page['title']}\n{page['message']}\n", flush=True)
        if lat is not None:
            print(f"event → page: {lat:.2f} s", flush=True)
        if args.auto_ack:
            token = link.rsplit("/", 1)[1]
            r = httpx.post(f"{srv.url}/api/ack/{token}", json={"action": "ack"})
            r.raise_for_status()
            with stack.api() as c:
                states = [a["state"] for a in c.get("/api/alerts").json()]
            print(f"after acknowledging: alert states {states}", flush=True)
            assert "acknowledged" in states, states
            return 0
        print(f"open {link} and tap 已收到; the dashboard shows it acknowledged. Ctrl-C to stop.",
              flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
