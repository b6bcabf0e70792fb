"""Model deployment end to end: a real server (private locked broker) and a real node process.

A good model is switched to; a file corrupted on the server is refused and a file that is not
a model is rolled back, each time with the old model kept and the reason in cmd/result.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from sqlalchemy import select

from edge.cli import main as edge_main
from edge.manifest import ModelEntry, Source
from edge.model import store as modelstore
from protocol.digest import sha256_file
from scripts.demo import DemoStack
from server.core.db import CommandRow, Node
from server.fleet import rollout as server_models
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _static_video(path: Path, photo: Path, seconds: int = 240, fps: int = 2) -> Path:
    """A long video of one real photo, so the node keeps running while models change."""
    img = cv2.imread(str(photo))
    img = cv2.resize(img, (640, 480))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    for _ in range(seconds * fps):
        out.write(img)
    out.release()
    return path


def _resaved(src: Path, out: Path, note: str) -> Path:
    """The same network saved again by Ultralytics: a valid model with other bytes."""
    from ultralytics import YOLO  # type: ignore[attr-defined]

    model = YOLO(str(src), task="detect")
    model.ckpt["pondwatch_note"] = note
    model.save(str(out))
    return out


@pytest.fixture(scope="module")
def stack(scenes_dir: Path, model_path: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[dict[str, Any]]:
    """Server with its private broker, and `pondwatch-edge run` on a long static video."""
    work = tmp_path_factory.mktemp("deploy")
    st = DemoStack(work / "stack", model=model_path, scenes=scenes_dir)
    node: subprocess.Popen[bytes] | None = None
    try:
        srv = st.start_server()
        sup = srv.services.supervisor
        assert sup is not None
        import ultralytics
        bus = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
        models = work / "node-models"
        models.mkdir()
        (models / "person-offline.pt").write_bytes(model_path.read_bytes())
        (models / "person.pt").symlink_to("person-offline.pt")
        cfg = {
            "node_id": "heyuan-01", "pond_id": "heyuan-shantang",
            "camera": {"source": str(_static_video(work / "bus.mp4", bus)), "fps": 2},
            "model": {"path": str(models / "person.pt"), "imgsz": 320,
                      "labels": {"person": ["person", "Normal", "Fall"]}},
            "zones": {"water": [[0, 0.9], [1, 0.9], [1, 1], [0, 1]]},
            "mqtt": {"url": sup.url,
                     "password_file": str(sup.credentials.password_file("heyuan-01"))},
            "outbox": str(work / "outbox.db"),
            "health": {"interval_s": 5},
            "deploy": {"server_url": srv.url, "timeout_s": 10},
        }
        node_yaml = work / "node.yaml"
        node_yaml.write_text(yaml.safe_dump(cfg))
        log = open(work / "node.log", "wb")  # noqa: SIM115 closed with the process
        node = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", str(node_yaml)],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "YOLO_OFFLINE": "1"})
        yield {"stack": st, "srv": srv, "node": node, "models": models, "work": work,
               "log": work / "node.log"}
    finally:
        if node is not None and node.poll() is None:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(20)
            except subprocess.TimeoutExpired:
                node.kill()
        st.stop()
        os.environ.pop("PONDWATCH_ADMIN_PASSWORD", None)  # DemoStack sets it for its server


def _fleet(st: DemoStack, api: bool = False) -> dict[str, Any]:
    """The server's model status of heyuan-01 (from the database, or over the JSON API)."""
    if api:
        with st.api() as c:
            rows = c.get("/api/fleet/models").json()
        return next(r for r in rows if r["node_id"] == "heyuan-01")
    assert st.server is not None
    with st.server.services.sessions() as s:
        node = s.get(Node, "heyuan-01")
        assert node is not None
        return server_models.node_status(s, node)


def _upload_assign(st: DemoStack, name: str, data: bytes,
                   before_assign: Any = None) -> dict[str, Any]:
    """Upload with passing figures measured on this very file, then assign to the pond."""
    sha = hashlib.sha256(data).hexdigest()
    evals = {"water-people-valid": {"recall": 0.9, "sha256": sha},
             "land-people-valid": {"recall": 0.75, "false_per_image": 0.3, "sha256": sha},
             "scenes-land": {"recall": 0.97, "sha256": sha}}
    entry = {"labels": {"person": ["Normal", "Fall"]}, "eval": evals, "sha256": sha}
    with st.api() as c:
        r = c.post("/api/models", files={"file": (f"{name}.pt", data)},
                   data={"name": name, "entry": json.dumps(entry)})
        assert r.status_code == 201, r.text
        if before_assign:
            before_assign(sha)
        r = c.post(f"/api/models/{name}/assign", json={"pond_id": "heyuan-shantang"})
        assert r.status_code == 200, r.text
        assert r.json()["sent_to"] == ["heyuan-01"]
    return {"sha": sha}


def _answer(env: dict[str, Any], name: str, timeout: float = 90) -> CommandRow:
    """The node's answer to the newest model_update for name."""
    sessions = env["srv"].services.sessions

    def answered() -> CommandRow | None:
        with sessions() as s:
            row = s.scalars(select(CommandRow).where(CommandRow.cmd == "model_update")
                            .order_by(CommandRow.created_at.desc())).first()
            if row is not None and row.args.get("name") == name and row.result_at is not None:
                return row
            return None

    try:
        return wait_for(answered, timeout=timeout)
    except AssertionError:
        raise AssertionError("no answer; node log:\n" + env["log"].read_text()[-3000:]) from None


def _active_sha(env: dict[str, Any]) -> str:
    """sha256 of the file the node's model.path serves now."""
    return sha256_file(env["models"] / "person.pt")


@pytest.mark.slow
def test_deploy_good_then_corrupt_then_broken(stack: dict[str, Any], model_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch to a good model; refuse a corrupted download; roll back a file that will not load."""
    st, env = stack["stack"], stack
    offline = sha256_file(model_path)
    wait_for(lambda: _fleet(st)["model_sha256"] == offline, timeout=90)
    shown = _fleet(st, api=True)
    assert shown["model"] == "person-offline" and shown["model_format"] == "pytorch"

    # the good model goes up with `pondwatch-edge model push` from a manifest entry
    local = env["work"] / "local-models"
    local.mkdir()
    good_path = _resaved(model_path, local / "pond-v2.pt", "v2")
    good = good_path.read_bytes()
    v2 = hashlib.sha256(good).hexdigest()
    manifest = env["work"] / "manifest.yaml"
    shutil.copyfile(ROOT / "models" / "manifest.yaml", manifest)
    modelstore.add_entry(manifest, "pond-v2", ModelEntry(
        file="pond-v2.pt", source=Source(kind="local"), sha256=v2,
        licence="Apache-2.0", classes={0: "Normal", 1: "Fall"},
        labels={"person": ["Fall", "Normal"]},
        eval={"water-people-valid": {"recall": 0.9, "sha256": v2},
              "land-people-valid": {"recall": 0.75, "false_per_image": 0.3, "sha256": v2},
              "scenes-land": {"recall": 0.97, "sha256": v2}}))
    monkeypatch.setenv("PONDWATCH_PASSWORD", "wrong")
    push = ["model", "--manifest", str(manifest), "--dir", str(local), "push", "pond-v2",
            "--server", env["srv"].url, "--user", "admin"]
    assert edge_main(push) == 2  # the server refuses a wrong admin password (a ModelStoreError)
    monkeypatch.setenv("PONDWATCH_PASSWORD", st.admin_password)
    assert edge_main(push) == 0
    with st.api() as c:
        r = c.post("/api/models/pond-v2/assign", json={"pond_id": "heyuan-shantang"})
        assert r.status_code == 200 and r.json()["sent_to"] == ["heyuan-01"], r.text
    row = _answer(env, "pond-v2")
    assert row.ok, row.result
    assert row.result["previous"]["sha256"] == offline and _active_sha(env) == v2
    wait_for(lambda: _fleet(st)["model_sha256"] == v2, timeout=30)
    assert _fleet(st, api=True)["model_mismatch"] is False

    def corrupt(sha: str) -> None:
        path = server_models.file_path(env["srv"].services.cfg, sha)
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        path.write_bytes(bytes(raw))

    third = _resaved(model_path, env["work"] / "v3.pt", "v3").read_bytes()
    v3 = _upload_assign(st, "pond-v3", third, before_assign=corrupt)["sha"]
    row = _answer(env, "pond-v3")
    assert not row.ok
    assert f"the server announced {v3}; refused" in row.result["error"]
    assert row.result["kept"]["sha256"] == v2 and _active_sha(env) == v2
    assert not list(env["models"].glob("*.part")) and not list(env["models"].glob("pond-v3*"))
    wait_for(lambda: _fleet(st)["model_mismatch"] is True, timeout=30)  # flagged until fixed

    junk = np.random.default_rng(0).bytes(4096)
    _upload_assign(st, "pond-junk", junk)
    row = _answer(env, "pond-junk")
    assert not row.ok and "does not load" in row.result["error"], row.result
    assert "rolled back" in row.result["error"] and _active_sha(env) == v2
    assert stack["node"].poll() is None  # the node kept running through all three
