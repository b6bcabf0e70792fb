"""ModelDeployer: real HTTP downloads with the node's credentials, atomic switch and rollback."""

from __future__ import annotations

import base64
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.config import NodeConfig
from edge.model.deploy import ModelDeployer
from protocol.digest import sha256_file

TOKEN = "Basic " + base64.b64encode(b"node-01:pw-1").decode()


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A loopback HTTP server that serves files only to node-01:pw-1; records auth headers."""
    root = tmp_path / "www"
    root.mkdir()
    seen: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(root), **kw)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(self.headers.get("Authorization", ""))
            if self.headers.get("Authorization") != TOKEN:
                self.send_error(401)
                return
            super().do_GET()

        def log_message(self, *a: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", root, seen
    finally:
        srv.shutdown()
        srv.server_close()


def _cfg(tmp: Path, model: Path, url: str | None) -> NodeConfig:
    """A node config whose model.path is model."""
    return NodeConfig.model_validate({
        "node_id": "node-01", "pond_id": "p", "camera": {"source": "x.mp4"},
        "model": {"path": str(model)}, "zones": {"water": [[0, 0], [1, 0], [1, 1]]},
        "outbox": str(tmp / "outbox.db"), "deploy": {"server_url": url}})


class Harness:
    """A deployer whose detectors are the file contents, and a selftest the test sets."""

    def __init__(self, cfg: NodeConfig, password: str = "pw-1") -> None:
        self.active: Any = "old-detector"
        self.swaps: list[Any] = []
        self.checks = {"model": True, "clock": False}
        self.after_switch: dict[str, bool] = {}
        self.switched: list[Any] = []
        self.cfg = cfg
        self.deployer = ModelDeployer(cfg, load=self.load, swap=self.swap,
                                      selftest=self.selftest, on_switched=self.switched.append,
                                      password=lambda: password)

    def load(self, path: str) -> Any:
        data = Path(path).read_bytes()
        if not data.startswith(b"MODEL"):
            raise RuntimeError("not a model")
        return data

    def swap(self, new: Any) -> Any:
        old, self.active = self.active, new
        self.swaps.append(new)
        return old

    def selftest(self) -> tuple[bool, dict[str, Any]]:
        checks = {**self.checks, **(self.after_switch if self.swaps else {})}
        return all(checks.values()), {"checks": [{"name": k, "ok": v} for k, v in checks.items()]}


def _publish(root: Path, data: bytes) -> tuple[str, str]:
    """Serve data; its sha256 and path."""
    sha = hashlib.sha256(data).hexdigest()
    (root / f"{sha}.pt").write_bytes(data)
    return sha, f"/node-api/models/{sha}.pt"


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    """A models folder with old.pt and person.pt -> old.pt."""
    d = tmp_path / "models"
    d.mkdir()
    (d / "old.pt").write_bytes(b"MODEL old")
    (d / "person.pt").symlink_to("old.pt")
    return d


def _args(url: str, sha: str, path: str, name: str = "v2") -> dict[str, Any]:
    return {"name": name, "sha256": sha, "url": url + path.replace("/node-api/models", "")}


def test_good_model_switches_the_symlink(tmp_path: Path, models: Path,
                                         server: tuple[str, Path, list[str]]) -> None:
    """Download with the node's credentials, switch person.pt, report the new identity.
    A clock check failing before and after the switch is not the model's fault."""
    url, root, seen = server
    sha, path = _publish(root, b"MODEL v2")
    h = Harness(_cfg(tmp_path, models / "person.pt", url))
    ok, res = h.deployer.handle(_args(url, sha, path))
    assert ok, res
    assert seen == [TOKEN] and h.active == b"MODEL v2"
    assert sha256_file(models / "person.pt") == sha and (models / "person.pt").is_symlink()
    assert res["previous"]["sha256"] == hashlib.sha256(b"MODEL old").hexdigest()
    assert h.switched and h.switched[0].sha256 == sha
    ok, res = h.deployer.handle(_args(url, sha, path))
    assert ok and res["unchanged"] and len(seen) == 1


def test_selftest_broken_by_switch_rolls_back(tmp_path: Path, models: Path,
                                              server: tuple[str, Path, list[str]]) -> None:
    """A check that passed before and fails after the switch puts the old model back."""
    url, root, _ = server
    sha, path = _publish(root, b"MODEL loads but cannot detect")
    h = Harness(_cfg(tmp_path, models / "person.pt", url))
    h.after_switch = {"model": False}
    ok, res = h.deployer.handle(_args(url, sha, path))
    assert not ok and "selftest failed after the switch (model); rolled back" in res["error"]
    assert h.active == "old-detector" and h.swaps[-1] == "old-detector"
    assert (models / "person.pt").resolve().name == "old.pt"
    assert sorted(p.name for p in models.iterdir()) == ["old.pt", "person.pt"]


def test_plain_file_switch_and_load_failure(tmp_path: Path,
                                            server: tuple[str, Path, list[str]]) -> None:
    """A plain model file is replaced in one rename (old kept as .previous); a file that does
    not load is rolled back."""
    url, root, _ = server
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.pt").write_bytes(b"MODEL old")
    h = Harness(_cfg(tmp_path, d / "model.pt", url))
    sha, path = _publish(root, b"not a model at all")
    ok, res = h.deployer.handle(_args(url, sha, path, "junk"))
    assert not ok and "does not load" in res["error"] and "rolled back" in res["error"]
    assert (d / "model.pt").read_bytes() == b"MODEL old" and h.swaps == []
    sha, path = _publish(root, b"MODEL v2")
    ok, res = h.deployer.handle(_args(url, sha, path))
    assert ok, res
    assert (d / "model.pt").read_bytes() == b"MODEL v2"
    assert (d / "model.pt.previous").read_bytes() == b"MODEL old"


def test_refusals_keep_the_old_model(tmp_path: Path, models: Path,
                                     server: tuple[str, Path, list[str]]) -> None:
    """Wrong digest, wrong password, a foreign URL, no server_url and bad args are refused."""
    url, root, seen = server
    sha, path = _publish(root, b"MODEL v2")
    h = Harness(_cfg(tmp_path, models / "person.pt", url))
    ok, res = h.deployer.handle(_args(url, "a" * 64, path))
    assert not ok and f"sha256 of the download is {sha}, the server announced {'a' * 64}" in \
        res["error"]
    bad_pw = Harness(_cfg(tmp_path, models / "person.pt", url), password="wrong")
    ok, res = bad_pw.deployer.handle(_args(url, sha, path))
    assert not ok and "HTTP 401" in res["error"]
    ok, res = h.deployer.handle({"name": "v2", "sha256": sha, "url": "http://evil.example/x"})
    assert not ok and "not under deploy.server_url" in res["error"]
    export = models / "old_ncnn_model"
    export.mkdir()
    on_export = Harness(_cfg(tmp_path, export, url))
    ok, res = on_export.deployer.handle(_args(url, sha, path))
    assert not ok and "is a ncnn export" in res["error"]
    none = Harness(_cfg(tmp_path, models / "person.pt", None))
    ok, res = none.deployer.handle(_args(url, sha, path))
    assert not ok and "deploy.server_url is not configured" in res["error"]
    assert not h.deployer.handle({"name": "Bad Name", "sha256": sha, "url": url})[0]
    assert not h.deployer.handle({"name": "v2", "sha256": "xyz", "url": url})[0]
    assert (models / "person.pt").resolve().name == "old.pt" and h.swaps == []
    assert not list(models.glob(".*part"))
    assert len(seen) == 2  # the foreign URL, the export and bad args never got credentials
