"""Model manifest, resolution with sha256 checks, and the idempotent fetch script."""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from edge.manifest import ModelStoreError, identify, load_manifest
from edge.model.store import resolve
from protocol.digest import sha256_file

REPO = Path(__file__).resolve().parents[3]
OFFLINE = REPO / "models" / "person-offline.pt"
OFFLINE_SHA = "5f6f620d0fa574ed80d8348bb8d46060148eb0ba24e3eea00d31a30cdadba41d"


def _script() -> ModuleType:
    """Import scripts/fetch_model.py."""
    spec = importlib.util.spec_from_file_location("fetch_model", REPO / "scripts/fetch_model.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fetch_model"] = mod
    spec.loader.exec_module(mod)
    return mod


fm = _script()


@pytest.fixture()
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on loopback serving a folder."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):  # type: ignore[no-untyped-def]
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):  # type: ignore[no-untyped-def]
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", root
    finally:
        srv.shutdown()
        srv.server_close()


def _manifest(tmp: Path, url: str, sha: str | None) -> Path:
    """A manifest whose yolo11n comes from url."""
    data = yaml.safe_load((REPO / "models/manifest.yaml").read_text())
    data["models"]["yolo11n"]["source"]["url"] = url
    data["models"]["yolo11n"]["sha256"] = sha
    p = tmp / "manifest.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_repo_manifest() -> None:
    """Both models are listed with licence and a person label."""
    man = load_manifest()
    assert set(man.models) >= {"person-offline", "yolo11n"}
    po = man.models["person-offline"]
    assert po.sha256 == OFFLINE_SHA and po.licence == "Apache-2.0"
    assert po.source.member == "fall_detection/models/best.pt"
    assert {"Normal", "Fall"} <= set(po.labels["person"])
    assert man.models["yolo11n"].licence == "AGPL-3.0"


def test_resolve_offline_checks_sha() -> None:
    """person-offline resolves to the repo file with its labels."""
    r = resolve("person-offline")
    assert r.path == OFFLINE and r.sha256 == OFFLINE_SHA
    assert identify(OFFLINE) == "person-offline"


def test_resolve_errors(tmp_path: Path) -> None:
    """Unknown name, missing file and wrong sha256 each raise a clear error."""
    with pytest.raises(ModelStoreError, match="unknown model 'nope'"):
        resolve("nope")
    with pytest.raises(ModelStoreError, match="missing; run pondwatch-edge model fetch"):
        resolve("person-offline", folder=tmp_path)
    (tmp_path / "person-offline.pt").write_bytes(b"not a model")
    with pytest.raises(ModelStoreError, match="sha256 does not match"):
        resolve("person-offline", folder=tmp_path)
    assert resolve("person-offline", folder=tmp_path, check=False).path.is_file()


@pytest.mark.parametrize("text,match", [
    ("models: [", "not valid YAML"),
    ("default: auto\nmodels: {}\n", "field models"),
    ("models:\n  x:\n    file: x.pt\n    source: {kind: pypi-wheel, requirement: a==1}\n"
     "    licence: MIT\n    classes: COCO\n    labels: {person: [person]}\n", "member"),
    ("default: other\nmodels:\n  x:\n    file: x.pt\n    source: {kind: url, url: 'https://a/x.pt'}\n"
     "    licence: MIT\n    classes: COCO\n    labels: {person: [person]}\n", "default"),
    ("models:\n  x:\n    file: x.pt\n    source: {kind: url, url: 'https://a/x.pt'}\n"
     "    sha256: abc\n    licence: MIT\n    classes: COCO\n    labels: {person: [person]}\n",
     "sha256"),
])
def test_bad_manifest(tmp_path: Path, text: str, match: str) -> None:
    """Broken manifests are refused with the field named."""
    p = tmp_path / "manifest.yaml"
    p.write_text(text)
    with pytest.raises(ModelStoreError, match=match):
        load_manifest(p)


def test_missing_manifest(tmp_path: Path) -> None:
    """A manifest that does not exist is a ModelStoreError."""
    with pytest.raises(ModelStoreError, match="cannot read"):
        load_manifest(tmp_path / "none.yaml")


def test_fetch_idempotent_and_link(tmp_path: Path) -> None:
    """A verified file is kept (no download); person.pt links to it; identify follows the link."""
    shutil.copyfile(OFFLINE, tmp_path / "person-offline.pt")
    before = (tmp_path / "person-offline.pt").stat().st_mtime_ns
    assert fm.main(["--model", "person-offline", "--dest", str(tmp_path)]) == 0
    assert fm.main(["--model", "person-offline", "--dest", str(tmp_path)]) == 0
    person = tmp_path / "person.pt"
    assert person.resolve() == (tmp_path / "person-offline.pt").resolve()
    assert (tmp_path / "person-offline.pt").stat().st_mtime_ns == before
    assert identify(person) == "person-offline"


def test_auto_falls_back_when_url_unreachable(tmp_path: Path) -> None:
    """auto: yolo11n on a dead loopback port fails fast; person-offline is used."""
    shutil.copyfile(OFFLINE, tmp_path / "person-offline.pt")
    man = _manifest(tmp_path, "http://127.0.0.1:9/yolo11n.pt", None)
    assert fm.main(["--model", "auto", "--dest", str(tmp_path), "--manifest", str(man),
                    "--timeout", "2"]) == 0
    assert (tmp_path / "person.pt").resolve().name == "person-offline.pt"
    assert not (tmp_path / "yolo11n.pt").exists()


def test_default_links_the_manifests_default(tmp_path: Path) -> None:
    """No --model: the manifest's default (pond-person-v2 in the repo) becomes person.pt."""
    assert load_manifest().default == "pond-person-v2"
    shutil.copyfile(OFFLINE, tmp_path / "person-offline.pt")
    man = _manifest(tmp_path, "http://127.0.0.1:9/yolo11n.pt", None)
    data = yaml.safe_load(man.read_text())
    data["default"] = "person-offline"
    man.write_text(yaml.safe_dump(data))
    assert fm.main(["--dest", str(tmp_path), "--manifest", str(man)]) == 0
    assert (tmp_path / "person.pt").resolve().name == "person-offline.pt"


def test_url_download_verified(tmp_path: Path, http_root: tuple[str, Path]) -> None:
    """A URL model is downloaded, checked against sha256, and linked as person.pt."""
    url, root = http_root
    (root / "yolo11n.pt").write_bytes(b"weights" * 1000)
    sha = hashlib.sha256(b"weights" * 1000).hexdigest()
    man = _manifest(tmp_path, f"{url}/yolo11n.pt", sha)
    dest = tmp_path / "m"
    assert fm.main(["--model", "yolo11n", "--dest", str(dest), "--manifest", str(man)]) == 0
    assert (dest / "person.pt").resolve().name == "yolo11n.pt"
    assert sha256_file(dest / "yolo11n.pt") == sha


def test_url_download_wrong_sha_refused(tmp_path: Path, http_root: tuple[str, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Bytes that do not match the manifest are discarded and the script exits 1."""
    url, root = http_root
    (root / "yolo11n.pt").write_bytes(b"tampered")
    man = _manifest(tmp_path, f"{url}/yolo11n.pt", "0" * 64)
    dest = tmp_path / "m"
    assert fm.main(["--model", "yolo11n", "--dest", str(dest), "--manifest", str(man)]) == 1
    assert "the manifest expects " + "0" * 64 in capsys.readouterr().err
    assert not list(dest.glob("yolo11n.pt*"))
    assert not (dest / "person.pt").exists()


def test_unknown_model_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--model with a name not in the manifest fails with the known names."""
    assert fm.main(["--model", "nope", "--dest", str(tmp_path)]) == 1
    assert "person-offline" in capsys.readouterr().err
