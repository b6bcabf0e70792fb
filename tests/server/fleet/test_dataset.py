"""dataset export: which alerts become images, labels from boxes, refusals that lose nothing."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from server.alerting import alerts
from server.core.db import Alert, EventFrame, EventRow
from server.fleet.dataset import DatasetError, export, split_of, yolo_line
from server.link.ingest import Inbound
from tests.server.alerting.test_escalation import JPEG, Harness, P
from tests.server.conftest import PageReceiver


@pytest.fixture
def h(tmp_path: Path, receiver: PageReceiver) -> Harness:
    """Services on a fake clock, fed through the real ingest path."""
    harness = Harness(tmp_path, receiver)
    yield harness
    harness.close()


def _critical(h: Harness, pond: str, node: str, boxes: list[list[float]] | None,
              frame: bool = True) -> str:
    """A critical event with boxes and (optionally) its frame; returns the event id."""
    ev = h.event("person_in_water", node=node, pond=pond, boxes=boxes, frame=frame)
    if frame:
        h.ing.process(Inbound(f"{P}/{node}/snapshot/{ev.id}-frame", JPEG, 1, 1))
    return ev.id


def _resolve(h: Harness, event_id: str, outcome: str, by: str | None = "guo-yong") -> None:
    """Resolve the alert of an event as a person (or as the node when by is None)."""
    with h.svc.sessions() as s, s.begin():

        row = s.get(EventRow, event_id)
        a = s.get(Alert, row.alert_id)
        if by is None:
            alerts.auto_resolve(s, a.pond_id, a.kind, a.subject, None, h.clock.now())
        else:
            alerts.act(s, a, "resolve", by, h.clock.now(), outcome)


def test_export_labels_background_and_left_out(h: Harness, tmp_path: Path) -> None:
    """real → labels from boxes; false_alarm → empty; test, node-cleared, no-box and
    frame-less alerts are left out; the frame is stored apart from the snapshots."""
    since = h.clock.now() - timedelta(minutes=1)
    real = _critical(h, "heyuan-shantang", "heyuan-01", [[0.1, 0.2, 0.3, 0.8]])
    fooled = _critical(h, "xiatang", "xiatang-01", [[0.5, 0.5, 0.6, 0.7]])
    tested = _critical(h, "beitang", "beitang-01", [[0.5, 0.5, 0.6, 0.7]])
    with h.svc.sessions() as s:
        assert s.get(EventFrame, {"event_id": real, "node_id": "heyuan-01"}) is not None
    _resolve(h, real, "real")
    _resolve(h, fooled, "false_alarm")
    _resolve(h, tested, "test")
    sos = h.event("sos", node="heyuan-01", pond="heyuan-shantang", boxes=[], frame=True)
    h.ing.process(Inbound(f"{P}/heyuan-01/snapshot/{sos.id}-frame", JPEG, 1, 1))
    _resolve(h, sos.id, "real")
    node_cleared = _critical(h, "heyuan-shantang", "heyuan-01", [[0.1, 0.1, 0.2, 0.2]])
    _resolve(h, node_cleared, "real", by=None)
    out = tmp_path / "ds"
    umask = os.umask(0o022)  # a usual umask: the export must not follow it
    try:
        with h.svc.sessions() as s:
            counts = export(s, since, out, ["Normal", "Fall"])
    finally:
        os.umask(umask)
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in [out, *out.rglob("*")]}
    assert modes["."] == 0o700 and modes["data.yaml"] == 0o600
    assert {m for p, m in modes.items() if (out / p).is_dir()} == {0o700}, modes
    assert {m for p, m in modes.items() if (out / p).is_file()} == {0o600}, modes
    assert (counts.real, counts.background) == (1, 1)
    assert counts.skipped == {"real_without_boxes": 1}
    labels = {p.stem: p.read_text() for p in out.glob("labels/*/*.txt")}
    assert set(labels) == {real, fooled}
    assert labels[real] == "0 0.200000 0.500000 0.200000 0.600000\n"
    assert labels[fooled] == ""
    assert counts.train == 1 and counts.val == 1  # both splits get an image
    assert (out / "data.yaml").read_text().count("Normal") == 1
    with h.svc.sessions() as s, pytest.raises(DatasetError, match="not empty"):
        export(s, since, out)
    with h.svc.sessions() as s, pytest.raises(DatasetError, match="no resolved"):
        export(s, h.clock.now() + timedelta(days=1), tmp_path / "later")
    assert not (tmp_path / "later").exists()


def test_frames_purged_with_snapshots(h: Harness) -> None:
    """Frames follow the snapshot retention."""
    _critical(h, "heyuan-shantang", "heyuan-01", [[0.1, 0.2, 0.3, 0.8]])
    h.clock.advance(h.cfg.snapshot_retention_days * 86400 + 60)
    assert h.svc.purge_snapshots() >= 1
    with h.svc.sessions() as s:
        assert s.query(EventFrame).count() == 0


def test_helpers() -> None:
    """Box conversion refuses empty boxes; the split is fixed by the id."""
    assert yolo_line([0, 0, 1, 1]) == "0 0.500000 0.500000 1.000000 1.000000"
    with pytest.raises(ValueError):
        yolo_line([0.5, 0.5, 0.5, 0.9])
    assert split_of("abc", 0.2) == split_of("abc", 0.2)
    assert {split_of(f"e{i}", 0.5) for i in range(50)} == {"train", "val"}


def test_every_export_is_audited(h: Harness, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import select

    from server.access import auth
    from server.cli import main
    from server.core.db import AuditEntry

    since = h.clock.now() - timedelta(minutes=1)
    _resolve(h, _critical(h, "heyuan-shantang", "heyuan-01", [[0.1, 0.2, 0.3, 0.8]]), "real")
    with h.svc.sessions() as s, s.begin():
        auth.set_user(s, "root", "root-pass-1234", "admin")
    monkeypatch.setenv("PONDWATCH_PASSWORD", "root-pass-1234")
    out = tmp_path / "audited"
    assert main(["dataset", "export", str(out), "--since", since.isoformat(),
                 "--database", h.cfg.database, "--user", "root"]) == 0
    with h.svc.sessions() as s:
        [row] = s.scalars(select(AuditEntry)).all()
    assert (row.username, row.action) == ("root", "dataset_export")
    assert str(out.resolve()) in row.detail and "1 real" in row.detail
