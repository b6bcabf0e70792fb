"""Model deployment end to end: a real server (private locked broker) and a real node process.

A good model, signed with the county's key (`model keygen`, `model sign`), is switched to; a
file corrupted on the server is refused and a file that is not a model is rolled back, each
time with the old model kept and the reason in cmd/result. A booby-trapped .pt never runs:
unsigned, the server refuses it; signed by a key only a compromised server trusts, or sent with
a signature whose entry was raised, the node refuses it before unpickling, and its marker file
never appears.
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
from protocol import signing
from protocol.digest import sha256_file
from scripts.demo import DemoStack
from server.core.db import CommandRow, Node, ServerModel
from server.fleet import rollout as server_models
from server.link import commands
from tests.signed import make_key, trapped_pt
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
    county, county_pub = make_key(work / "keys", "county")
    # a key the server trusts and the nodes do not: a compromised server or its config
    rogue, rogue_pub = make_key(work / "keys", "rogue")
    st = DemoStack(work / "stack", model=model_path, scenes=scenes_dir,
                   model_keys=[county_pub, rogue_pub])
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
                      "labels": {"person": ["person", "Normal", "Fall"]},
                      "trusted_keys": [f"{county}.pub"]},
            "zones": {"water": [[0, 0.9], [1, 0.9], [1, 1], [0, 1]]},
            "mqtt": {"url": sup.url,
                     "password_file": str(sup.credentials.password_file("heyuan-01"))},
            "outbox": str(work / "outbox.db"),
            "health": {"interval_s": 5},
            "deploy": {"server_url": srv.url, "timeout_s": 10, "allow_http": True},
        }
        node_yaml = work / "node.yaml"
        node_yaml.write_text(yaml.safe_dump(cfg))
        log = open(work / "node.log", "wb")  # noqa: SIM115 closed with the process
        node = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", str(node_yaml)],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "YOLO_OFFLINE": "1"})
        yield {"stack": st, "srv": srv, "node": node, "models": models, "work": work,
               "log": work / "node.log", "county": county, "rogue": rogue}
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


def _signature(key: Path, name: str, data: bytes, water: float = 0.9) -> signing.SignatureDoc:
    """data and an entry with passing figures measured on this very file, signed by key."""
    sha = hashlib.sha256(data).hexdigest()
    evals = {"water-people-valid": {"recall": water, "sha256": sha},
             "land-people-valid": {"recall": 0.75, "false_per_image": 0.3, "sha256": sha},
             "scenes-land": {"recall": 0.97, "sha256": sha}}
    entry = {"labels": {"person": ["Normal", "Fall"]}, "eval": evals, "sha256": sha}
    return signing.sign(signing.load_private(key), name, sha, len(data), entry)


def _upload_assign(st: DemoStack, name: str, data: bytes, key: Path,
                   before_assign: Any = None) -> dict[str, Any]:
    """Upload signed by key with passing figures, then assign to the pond."""
    sha = hashlib.sha256(data).hexdigest()
    doc = _signature(key, name, data)
    with st.api() as c:
        r = c.post("/api/models", files={"file": (f"{name}.pt", data)},
                   data={"name": name, "signature": doc.model_dump_json()})
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
    assert edge_main(push) == 2  # unsigned: refused before anything is sent
    sign = ["model", "--manifest", str(manifest), "--dir", str(local), "sign", "pond-v2",
            "--key", str(env["county"])]
    assert edge_main(sign) == 0 and signing.sig_path(good_path).is_file()
    verify = ["model", "--manifest", str(manifest), "--dir", str(local),
              "--trusted-key", f"{env['county']}.pub", "verify"]
    assert edge_main(verify) == 0
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
    v3 = _upload_assign(st, "pond-v3", third, env["county"], before_assign=corrupt)["sha"]
    row = _answer(env, "pond-v3")
    assert not row.ok
    assert f"the server announced {v3}; refused" in row.result["error"]
    assert row.result["kept"]["sha256"] == v2 and _active_sha(env) == v2
    assert not list(env["models"].glob("*.part")) and not list(env["models"].glob("pond-v3*"))
    wait_for(lambda: _fleet(st)["model_mismatch"] is True, timeout=30)  # flagged until fixed

    junk = np.random.default_rng(0).bytes(4096)
    _upload_assign(st, "pond-junk", junk, env["county"])
    row = _answer(env, "pond-junk")
    assert not row.ok and "does not load" in row.result["error"], row.result
    assert "rolled back" in row.result["error"] and _active_sha(env) == v2
    assert stack["node"].poll() is None  # the node kept running through all three


@pytest.mark.slow
def test_a_model_can_never_run_code_on_the_node(stack: dict[str, Any]) -> None:
    """A .pt whose unpickling touches a marker file: unsigned, the server refuses the upload;
    signed by a key the server trusts but the node does not, it is assigned and sent, and the
    node refuses it before loading; a county-signed entry with raised figures is refused by
    the server, and by the node when a (compromised) server sends it anyway. The marker never
    appears and the node keeps its model."""
    st, env = stack["stack"], stack
    wait_for(lambda: _fleet(st)["model_sha256"] is not None, timeout=90)
    before = _active_sha(env)
    marker = env["work"] / "pwned"
    trap = trapped_pt(env["work"] / "trap.pt", marker).read_bytes()
    with st.api() as c:
        r = c.post("/api/models", files={"file": ("trap.pt", trap)},
                   data={"name": "trap", "entry": json.dumps({"labels": {}})})
        assert r.status_code == 409 and "not signed" in r.json()["detail"], r.text
    _upload_assign(st, "trap", trap, env["rogue"])  # a compromised server would send it
    row = _answer(env, "trap")
    assert not marker.exists(), "the node unpickled the trapped model"
    assert not row.ok and "not trusted here" in row.result["error"], row.result
    assert "refused before loading" in row.result["error"]
    assert not marker.exists() and _active_sha(env) == before

    low = _signature(env["county"], "trap", trap, water=0.3)  # the county signed low figures
    raised = low.model_copy(update={"payload": low.payload.replace('"recall": 0.3,',
                                                                   '"recall": 0.95,')})
    assert raised.payload != low.payload
    with st.api() as c:
        r = c.post("/api/models", files={"file": ("t2.pt", trap + b"\0")},
                   data={"name": "trap-raised", "signature": raised.model_dump_json()})
        assert r.status_code == 409 and "does not match its payload" in r.json()["detail"]
    svc = env["srv"].services
    with svc.sessions() as s, s.begin():  # the server sends it anyway (trap is assigned)
        model = s.get(ServerModel, "trap")
        assert model is not None
        now = svc.clock.now()
        args = server_models.update_args(s, svc.cfg, model, "heyuan-01", now)
        args.update(name="trap-raised", signature=raised.model_dump(mode="json"))
        commands.send(s, svc.ingest.client, svc.ingest.topics, "heyuan-01", "model_update",
                      args, 600, "test", now)
    row = _answer(env, "trap-raised")
    assert not row.ok and "does not match its payload" in row.result["error"], row.result
    assert not marker.exists() and _active_sha(env) == before
    assert not list(env["models"].glob("trap*"))
    assert stack["node"].poll() is None
