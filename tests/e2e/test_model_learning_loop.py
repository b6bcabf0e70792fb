"""The learning loop end to end: node events with boxes and frames → Mosquitto → server →
constables' verdicts → `dataset export` → `model train` (1 epoch) → `model eval`."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import yaml
from sqlalchemy import select

from edge.cli import main as edge_main
from edge.config import NodeConfig
from edge.link.mqtt import NodeLink
from edge.link.outbox import Outbox
from edge.manifest import load_manifest
from edge.vision.snapshot import encode_jpeg
from protocol import Event
from scripts.page_receiver import PageReceiver
from server.access import auth
from server.alerting.alerts import FALSE_ALARMS
from server.cli import main as server_main
from server.core.db import Alert, EventFrame, EventRow
from server.runner import Server
from tests.server.conftest import make_config
from tests.support import wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def assets() -> Path:
    """Ultralytics' sample photos (bus.jpg, zidane.jpg)."""
    import ultralytics
    return Path(ultralytics.__file__).resolve().parent / "assets"


def _samples(assets: Path, model_path: Path) -> list[tuple[str, np.ndarray, list[Any]]]:
    """Real photos with the people the offline model finds (verdict real), and people-free
    crops (verdict false_alarm: what fooled the node)."""
    from ultralytics import YOLO  # type: ignore[attr-defined]

    model = YOLO(str(model_path), task="detect")
    out: list[tuple[str, np.ndarray, list[Any]]] = []
    for photo in ("bus.jpg", "zidane.jpg"):
        img = cv2.imread(str(assets / photo))
        for flip in (False, True):
            frame = cv2.flip(img, 1) if flip else img
            boxes = model.predict(frame, conf=0.4, verbose=False)[0].boxes.xyxyn.cpu().numpy()
            out.append(("real", frame, [[round(float(v), 4) for v in b] for b in boxes]))
    bus = cv2.imread(str(assets / "bus.jpg"))
    sky = bus[: bus.shape[0] * 3 // 10]
    out.append(("false_alarm", sky, []))
    out.append(("false_alarm", cv2.flip(sky, 1), []))
    return out


@pytest.mark.slow
def test_alerts_verdicts_export_train_eval(tmp_path: Path, mosquitto: Any, assets: Path,
                                           model_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Every resolved alert's frame lands in the dataset with the right labels, and a model
    fine-tuned on it loads and is measured."""
    # an admin from the environment (the demo stack sets one) would reset our admin's password
    monkeypatch.delenv("PONDWATCH_ADMIN_PASSWORD", raising=False)
    receiver = PageReceiver()
    cfg = make_config(tmp_path, receiver, mosquitto.url)
    node_cfg = NodeConfig.model_validate({
        "node_id": "heyuan-01", "pond_id": "heyuan-shantang", "camera": {"source": "x.mp4"},
        "model": {"path": str(model_path), "labels": {"person": ["Normal", "Fall"]}},
        "zones": {"water": [[0, 0], [1, 0], [1, 1], [0, 1]]},
        "mqtt": {"url": mosquitto.url}, "outbox": str(tmp_path / "outbox.db"),
        "deploy": {"learning_frames": True}})  # opt-in: the county chose the learning loop
    outbox = Outbox(node_cfg.outbox)
    link = NodeLink(node_cfg, outbox)
    since = datetime.now(UTC)
    samples = _samples(assets, model_path)
    try:
        with Server(cfg) as srv:
            assert srv.services.ingest and srv.services.ingest.connected.wait(10)
            with srv.services.sessions() as s, s.begin():
                auth.set_user(s, "admin", "admin-pass-1", "admin")
            link.start()
            api = httpx.Client(base_url=srv.url, auth=("admin", "admin-pass-1"))
            ids: dict[str, str] = {}
            for verdict, frame, boxes in samples:
                ev = Event.make("person_in_water", "heyuan-01", "heyuan-shantang",
                                boxes=boxes, frame=True, snapshot=True, track_id=1)
                raw = encode_jpeg(frame)
                outbox.put(ev, raw, frame=raw)
                link.wake()
                wait_for(lambda: outbox.depth() == 0, timeout=15, what="ack")

                def alert_of(event_id: str = ev.id) -> int | None:
                    with srv.services.sessions() as s:
                        row = s.get(EventRow, event_id)
                        key = {"event_id": event_id, "node_id": "heyuan-01"}
                        ok = row is not None and s.get(EventFrame, key) is not None
                        return row.alert_id if ok and row is not None else None

                alert_id = wait_for(alert_of, timeout=10, what="stored frame")
                r = api.post(f"/api/alerts/{alert_id}/actions",
                             json={"action": "resolve", "outcome": verdict})
                assert r.status_code == 200, r.text
                ids[ev.id] = verdict
            with srv.services.sessions() as s:
                stored = s.scalars(select(EventRow).where(EventRow.id.in_(list(ids)))).all()
                assert all(r.payload.get("boxes") is not None for r in stored)
                alerts = s.scalars(select(Alert)).all()
                verdicts = {a.outcome for a in alerts if a.kind != FALSE_ALARMS}
                assert verdicts == {"real", "false_alarm"}
                # the false alarms put the node over its budget: one task for a technician
                assert [a.outcome for a in alerts if a.kind == FALSE_ALARMS] in ([], [None])
            api.close()
        db = cfg.database
    finally:
        link.stop()
        outbox.close()
        receiver.close()

    out = tmp_path / "dataset"
    monkeypatch.setenv("PONDWATCH_PASSWORD", "wrong-pass")
    assert server_main(["dataset", "export", str(out), "--since", since.isoformat(),
                        "--database", db, "--user", "admin"]) == 2  # admins only
    monkeypatch.setenv("PONDWATCH_PASSWORD", "admin-pass-1")
    assert server_main(["dataset", "export", str(out), "--since", since.isoformat(),
                        "--database", db, "--user", "admin", "--names", "Normal,Fall"]) == 0
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == {0: "Normal", 1: "Fall"}
    labels = {p.stem: p.read_text() for p in out.glob("labels/*/*.txt")}
    assert set(labels) == set(ids)
    assert {p.stem for p in out.glob("images/*/*.jpg")} == set(ids)
    assert list(out.glob("images/val/*.jpg")) and list(out.glob("images/train/*.jpg"))
    for event_id, verdict in ids.items():
        lines = labels[event_id].splitlines()
        if verdict == "false_alarm":
            assert lines == []  # background: learn what fooled it
        else:
            assert len(lines) >= 2 and all(ln.startswith("0 ") for ln in lines)
    assert server_main(["dataset", "export", str(out), "--since", since.isoformat(),
                        "--database", db, "--user", "admin"]) == 1  # never over old data
    # images that may show minors: without an admin, no export at all
    plain = tmp_path / "dataset-plain"
    with pytest.raises(SystemExit):
        server_main(["dataset", "export", "--since", since.isoformat(), str(plain),
                     "--database", db])
    assert not plain.exists()

    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(model_path, models / "person-offline.pt")
    manifest = tmp_path / "manifest.yaml"
    shutil.copyfile(REPO / "models/manifest.yaml", manifest)
    common = ["model", "--manifest", str(manifest), "--dir", str(models)]
    key = tmp_path / "county.key"  # the county's model key, made for this test
    assert edge_main(["model", "keygen", str(key)]) == 0
    assert edge_main([*common, "train", "--data", str(out / "data.yaml"), "--base",
                      "person-offline", "--epochs", "1", "--imgsz", "160", "--batch", "4",
                      "--name", "loop-v1", "--sign-key", str(key)]) == 0
    entry = load_manifest(manifest).models["loop-v1"]
    assert entry.data == [str(out / "data.yaml")] and entry.base == "person-offline"

    val = tmp_path / "val-set"
    (val / "images").mkdir(parents=True)
    (val / "labels").mkdir()
    for img in out.glob("images/*/*.jpg"):
        if labels[img.stem]:
            shutil.copy(img, val / "images")
            shutil.copy(img.parent.parent.parent / "labels" / img.parent.name /
                        f"{img.stem}.txt", val / "labels")
    sets = tmp_path / "sets.yaml"
    sets.write_text(yaml.safe_dump({"sets": {"loop": {"dir": str(val), "kind": "water"}}}))
    node_yaml = tmp_path / "node.yaml"
    trusting = node_cfg.model_dump(mode="json")
    trusting["model"]["trusted_keys"] = [f"{key}.pub"]  # the node loads only signed models
    node_yaml.write_text(yaml.safe_dump(trusting))
    assert edge_main([*common, "eval", "loop-v1", "--config", str(node_yaml), "--sets",
                      str(sets), "--record"]) == 0
    figures = load_manifest(manifest).models["loop-v1"].eval
    assert figures and 0.0 <= figures["loop"]["recall"] <= 1.0
    assert figures["loop"]["sha256"] == entry.sha256
    # the figures changed the entry: `model verify` says the signature must be renewed
    verify = [*common, "--trusted-key", f"{key}.pub", "verify"]
    assert edge_main(verify) == 0
    assert "run `model sign` again" in capsys.readouterr().out
    assert edge_main([*common, "sign", "loop-v1", "--key", str(key)]) == 0
    assert edge_main(verify) == 0
    assert "loop-v1: signed by key" in capsys.readouterr().out
