"""ModelDeployer: real HTTP downloads with the command's token, the signature checked before
loading, atomic switch and rollback."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.config import NodeConfig
from edge.model.deploy import ModelDeployer
from protocol import signing
from protocol.digest import sha256_file
from tests.signed import make_key, trapped_pt

TOKEN = "tok-" + "x" * 40
BEARER = f"Bearer {TOKEN}"


@pytest.fixture(scope="module")
def county(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The county's model key made for these tests: (private key, public text)."""
    return make_key(tmp_path_factory.mktemp("keys"))


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A loopback HTTP server that serves files only with TOKEN; records auth headers.
    /redirect/... answers with a redirect to the same file."""
    root = tmp_path / "www"
    root.mkdir()
    seen: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(root), **kw)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(self.headers.get("Authorization", ""))
            if self.headers.get("Authorization") != BEARER:
                self.send_error(401)
                return
            if self.path.startswith("/redirect/"):
                self.send_response(302)
                self.send_header("Location", self.path.removeprefix("/redirect"))
                self.end_headers()
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


KEYS: list[str] = []  # the county's public key, set by the autouse fixture
COUNTY: list[Path] = []  # and its private key


@pytest.fixture(autouse=True)
def _trust(county: tuple[Path, str]) -> None:
    KEYS[:], COUNTY[:] = [county[1]], [county[0]]


def _cfg(tmp: Path, model: Path, url: str | None) -> NodeConfig:
    """A node config whose model.path is model, trusting the county's key."""
    return NodeConfig.model_validate({
        "node_id": "node-01", "pond_id": "p", "camera": {"source": "x.mp4"},
        "model": {"path": str(model), "trusted_keys": KEYS},
        "zones": {"water": [[0, 0], [1, 0], [1, 1]]},
        "outbox": str(tmp / "outbox.db"), "deploy": {"server_url": url, "allow_http": True}})


class Harness:
    """A deployer whose detectors are the file contents, and a selftest the test sets."""

    def __init__(self, cfg: NodeConfig) -> None:
        self.active: Any = "old-detector"
        self.swaps: list[Any] = []
        self.checks = {"model": True, "clock": False}
        self.after_switch: dict[str, bool] = {}
        self.switched: list[Any] = []
        self.cfg = cfg
        self.deployer = ModelDeployer(cfg, load=self.load, swap=self.swap,
                                      selftest=self.selftest, on_switched=self.switched.append)

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


def _signed(root: Path, sha: str, name: str = "v2", key: Path | None = None,
            entry: dict[str, Any] | None = None) -> dict[str, Any]:
    """The signature document of a published file (default: by the county's key)."""
    data = (root / f"{sha}.pt").read_bytes()
    doc = signing.sign(signing.load_private(key or COUNTY[0]), name, sha, len(data),
                       {"labels": {"person": ["Normal"]}, **(entry or {})})
    return doc.model_dump(mode="json")


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    """A models folder with old.pt and person.pt -> old.pt."""
    d = tmp_path / "models"
    d.mkdir()
    (d / "old.pt").write_bytes(b"MODEL old")
    (d / "person.pt").symlink_to("old.pt")
    return d


def _args(url: str, sha: str, path: str, name: str = "v2", root: Path | None = None,
          sig: dict[str, Any] | None = None, size: int | None = None) -> dict[str, Any]:
    """model_update's arguments as the server sends them (signed by the county unless sig)."""
    rel = path.replace("/node-api/models", "")
    file = (root / rel.lstrip("/")) if root is not None else None
    if size is None:
        size = file.stat().st_size if file is not None and file.is_file() else 8
    if sig is None and root is not None and (root / f"{sha}.pt").is_file():
        sig = _signed(root, sha, name)
    return {"name": name, "sha256": sha, "url": url + rel, "size": size, "token": TOKEN,
            "signature": sig}


def test_good_model_switches_the_symlink(tmp_path: Path, models: Path,
                                         server: tuple[str, Path, list[str]]) -> None:
    """Download with the node's credentials, switch person.pt, report the new identity.
    A clock check failing before and after the switch is not the model's fault."""
    url, root, seen = server
    sha, path = _publish(root, b"MODEL v2")
    h = Harness(_cfg(tmp_path, models / "person.pt", url))
    ok, res = h.deployer.handle(_args(url, sha, path, root=root))
    assert ok, res
    assert seen == [BEARER] and h.active == b"MODEL v2"
    assert sha256_file(models / "person.pt") == sha and (models / "person.pt").is_symlink()
    assert res["previous"]["sha256"] == hashlib.sha256(b"MODEL old").hexdigest()
    assert h.switched and h.switched[0].sha256 == sha
    ok, res = h.deployer.handle(_args(url, sha, path, root=root))
    assert ok and res["unchanged"] and len(seen) == 1
    # the same model with a new signature (a rotated county key): renewed, nothing downloaded
    sig = signing.sig_path(models / f"v2-{sha[:12]}.pt")
    before = sig.read_text()
    ok, res = h.deployer.handle(_args(url, sha, path, root=root,
                                      sig=_signed(root, sha, entry={"operating_conf": 0.2})))
    assert ok and res["signature"].startswith("renewed") and sig.read_text() != before
    before = sig.read_text()
    other, _ = make_key(tmp_path / "other")
    ok, res = h.deployer.handle(_args(url, sha, path, root=root,
                                      sig=_signed(root, sha, key=other)))
    assert ok and "kept the old one" in res["signature"] and len(seen) == 1
    assert json.loads(sig.read_text())["key_id"] == json.loads(before)["key_id"]


def test_selftest_broken_by_switch_rolls_back(tmp_path: Path, models: Path,
                                              server: tuple[str, Path, list[str]]) -> None:
    """A check that passed before and fails after the switch puts the old model back."""
    url, root, _ = server
    sha, path = _publish(root, b"MODEL loads but cannot detect")
    h = Harness(_cfg(tmp_path, models / "person.pt", url))
    h.after_switch = {"model": False}
    ok, res = h.deployer.handle(_args(url, sha, path, root=root))
    assert not ok and "selftest failed after the switch (model); rolled back" in res["error"]
    assert h.active == "old-detector" and h.swaps[-1] == "old-detector"
    assert (models / "person.pt").resolve().name == "old.pt"
    assert sorted(p.name for p in models.iterdir()) == ["old.pt", "person.pt"]


def test_plain_file_switch_and_load_failure(tmp_path: Path,
                                            server: tuple[str, Path, list[str]]) -> None:
    """A plain model file is replaced in one rename (old kept as .previous) and so is its
    signature (model.pt.sig, which the detector checks); a file that does not load is rolled
    back with the old signature."""
    from edge.trust import check_model

    url, root, _ = server
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.pt").write_bytes(b"MODEL old")
    old_sig = signing.sign(signing.load_private(COUNTY[0]), "old",
                           hashlib.sha256(b"MODEL old").hexdigest(), 9, {"labels": {}})
    signing.sig_path(d / "model.pt").write_text(old_sig.model_dump_json())
    h = Harness(_cfg(tmp_path, d / "model.pt", url))
    sha, path = _publish(root, b"not a model at all")
    ok, res = h.deployer.handle(_args(url, sha, path, "junk", root=root))
    assert not ok and "does not load" in res["error"] and "rolled back" in res["error"]
    assert (d / "model.pt").read_bytes() == b"MODEL old" and h.swaps == []
    assert check_model(d / "model.pt", h.cfg.model).name == "old"
    sha, path = _publish(root, b"MODEL v2")
    ok, res = h.deployer.handle(_args(url, sha, path, root=root))
    assert ok, res
    assert (d / "model.pt").read_bytes() == b"MODEL v2"
    assert (d / "model.pt.previous").read_bytes() == b"MODEL old"
    assert check_model(d / "model.pt", h.cfg.model).name == "v2"
    assert sorted(p.name for p in d.iterdir()) == [
        "model.pt", "model.pt.previous", "model.pt.previous.sig", "model.pt.sig"]


def test_refusals_keep_the_old_model(tmp_path: Path, models: Path,
                                     server: tuple[str, Path, list[str]]) -> None:
    """Wrong digest, wrong token, a foreign URL, no server_url and bad args are refused."""
    url, root, seen = server
    sha, path = _publish(root, b"MODEL v2")
    h = Harness(_cfg(tmp_path, models / "person.pt", url))
    ok, res = h.deployer.handle(_args(url, "a" * 64, path, root=root))
    assert not ok and f"sha256 of the download is {sha}, the server announced {'a' * 64}" in \
        res["error"]
    ok, res = h.deployer.handle({**_args(url, sha, path, root=root), "token": "t" * 30})
    assert not ok and "HTTP 401" in res["error"]
    ok, res = h.deployer.handle({**_args(url, sha, path, root=root),
                                 "url": "http://evil.example/x"})
    assert not ok and "not under deploy.server_url" in res["error"]
    export = models / "old_ncnn_model"
    export.mkdir()
    on_export = Harness(_cfg(tmp_path, export, url))
    ok, res = on_export.deployer.handle(_args(url, sha, path, root=root))
    assert not ok and "is a ncnn export" in res["error"]
    none = Harness(_cfg(tmp_path, models / "person.pt", None))
    ok, res = none.deployer.handle(_args(url, sha, path, root=root))
    assert not ok and "deploy.server_url is not configured" in res["error"]
    good = _args(url, sha, path, root=root)
    for bad in ({"name": "Bad Name"}, {"sha256": "xyz"}, {"size": 0}, {"size": "8"},
                {"token": None}, {"token": "short"}, {"signature": {"format": "x"}}):
        assert not h.deployer.handle({**good, **bad})[0], bad
    assert (models / "person.pt").resolve().name == "old.pt" and h.swaps == []
    assert not list(models.glob(".*part"))
    assert len(seen) == 2  # the foreign URL, the export and bad args never got the token


def test_unsigned_or_wrongly_signed_models_never_load(tmp_path: Path, models: Path,
                                                      server: tuple[str, Path, list[str]]
                                                      ) -> None:
    """A booby-trapped .pt the server sends unsigned, signed by another key, or with a
    signature whose entry was changed (raised figures) is refused before loading: the loader
    is never called, its marker never appears, the files are removed, the old model stays."""
    url, root, _ = server
    marker = tmp_path / "pwned"
    trap = trapped_pt(tmp_path / "trap.pt", marker).read_bytes()
    sha, path = _publish(root, trap)
    h = Harness(_cfg(tmp_path, models / "person.pt", url))
    loaded: list[str] = []
    h.deployer._load = lambda p: loaded.append(p)  # type: ignore[assignment,method-assign]
    ok, res = h.deployer.handle({**_args(url, sha, path, root=root), "signature": None})
    assert not ok and "neither pinned" in res["error"] and "refused before loading" in \
        res["error"]
    other, _ = make_key(tmp_path / "other")
    ok, res = h.deployer.handle(_args(url, sha, path, root=root,
                                      sig=_signed(root, sha, key=other)))
    assert not ok and "not trusted here" in res["error"]
    low = _signed(root, sha, entry={"eval": {"water-people-valid": {"recall": 0.3}}})
    raised = {**low, "payload": low["payload"].replace('"recall": 0.3', '"recall": 0.9')}
    ok, res = h.deployer.handle(_args(url, sha, path, root=root, sig=raised))
    assert not ok and "does not match its payload" in res["error"]
    assert not loaded and not marker.exists() and h.swaps == []
    assert sorted(p.name for p in models.iterdir()) == ["old.pt", "person.pt"]


def test_download_bounded_by_the_announced_size_and_no_redirect(
        tmp_path: Path, models: Path, server: tuple[str, Path, list[str]]) -> None:
    """More bytes than announced, fewer, or a redirect: refused, nothing kept."""
    url, root, seen = server
    sha, path = _publish(root, b"MODEL v2 with some bytes")
    h = Harness(_cfg(tmp_path, models / "person.pt", url))
    ok, res = h.deployer.handle(_args(url, sha, path, root=root, size=8))
    assert not ok and "announced 8" in res["error"]
    ok, res = h.deployer.handle(_args(url, sha, path, root=root, size=4096))
    assert not ok and "announced 4096" in res["error"]
    redirect = _args(url, sha, path, root=root)
    redirect["url"] = redirect["url"].replace(url, url + "/redirect")
    ok, res = h.deployer.handle(redirect)
    assert not ok and "redirect" in res["error"] and len(seen) == 3
    assert sorted(p.name for p in models.iterdir()) == ["old.pt", "person.pt"]


def test_plain_http_server_url_only_in_development() -> None:
    """An http:// deploy.server_url is a config error unless allow_http says development."""
    from edge.config import DeployConfig

    with pytest.raises(ValueError, match="https"):
        DeployConfig(server_url="http://pw.county")
    assert DeployConfig(server_url="http://127.0.0.1:8000", allow_http=True).allow_http
    assert DeployConfig(server_url="https://pw.county").server_url
