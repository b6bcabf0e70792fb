"""Enrolment of the kit references: sidecars, view, preview, passers-by, bad sources, the CLI."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli import main as edge_main
from edge.config import load_config
from edge.site.enrol import enrol
from edge.site.equipment import roi_px, view_reference_path
from tests.edge.site.conftest import H, W, frames, scene_cfg


def test_enrol_writes_reference_sidecar_view_and_preview(refs: Path) -> None:
    """Each item gets a PNG and a JSON with time and light; a view and a preview exist."""
    for item in ("lifebuoy", "sign"):
        img = cv2.imread(str(refs / f"{item}.png"))
        assert img is not None and img.size > 0
        meta = json.loads((refs / f"{item}.json").read_text())
        assert meta["item"] == item and meta["frames"] == 15
        assert datetime.fromisoformat(meta["enrolled_at"]).tzinfo is not None
        assert 40 < meta["light_luma"] < 250
    assert json.loads((refs / "lifebuoy.json").read_text())["ring_px"] > 200
    assert cv2.imread(str(refs / "view.png")) is not None
    preview = cv2.imread(str(refs / "enrol-preview.png"))
    assert preview is not None and preview.shape[1] == W and preview.shape[0] > H


def test_enrol_robust_to_passer_by(scenes_dir: Path, refs: Path, tmp_path: Path) -> None:
    """A dark figure over the lifebuoy in 6 of 15 frames does not get into the reference."""
    folder = tmp_path / "shots"
    folder.mkdir()
    x0, y0, x1, y1 = roi_px((0.03, 0.25, 0.12, 0.4), W, H)
    for i, frame in frames(scenes_dir / "empty_static.mp4"):
        if i >= 15:
            break
        if i % 5 < 2:
            frame[y0:y1, x0:x1] = (30, 20, 20)
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
    cfg = scene_cfg(scenes_dir, "empty_static", tmp_path / "r")
    assert enrol(cfg, tmp_path / "node.yaml", source=str(folder)) == 0
    got = cv2.imread(str(tmp_path / "r" / "lifebuoy.png")).astype(int)
    clean = cv2.imread(str(refs / "lifebuoy.png")).astype(int)
    assert np.abs(got - clean).mean() < 4.0


def test_enrol_cli(scenes_dir: Path, tmp_path: Path) -> None:
    """pondwatch-edge enrol CONFIG --source writes the references the config names."""
    text = (scenes_dir / "lifebuoy_brief.yaml").read_text()
    cfg_path = tmp_path / "node.yaml"
    cfg_path.write_text(text.replace("refs/lifebuoy_brief/", "myrefs/"))
    rc = edge_main(["enrol", str(cfg_path), "--source", str(scenes_dir / "empty_static.mp4"),
                    "--frames", "5"])
    assert rc == 0
    assert (tmp_path / "myrefs" / "lifebuoy.png").exists()
    assert json.loads((tmp_path / "myrefs" / "sign.json").read_text())["frames"] == 5
    assert view_reference_path(load_config(cfg_path), cfg_path) == tmp_path / "myrefs/view.png"


def test_enrol_bad_sources(scenes_dir: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """A missing source, an empty folder and a dark view are refused with exit 1."""
    cfg = scene_cfg(scenes_dir, "empty_static", tmp_path / "r")
    assert enrol(cfg, tmp_path / "n.yaml", source=str(tmp_path / "nope.mp4")) == 1
    (tmp_path / "empty").mkdir()
    assert enrol(cfg, tmp_path / "n.yaml", source=str(tmp_path / "empty")) == 1
    dark = tmp_path / "dark.png"
    cv2.imwrite(str(dark), np.full((H, W, 3), 8, np.uint8))
    assert enrol(cfg, tmp_path / "n.yaml", source=str(dark)) == 1
    assert "too_dark" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
