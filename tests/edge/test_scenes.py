"""The scene generator is deterministic and writes clips, truth and configs that load."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

from edge.config import load_config

REPO = Path(__file__).resolve().parents[2]


def _load_script() -> ModuleType:
    """Import scripts/make_scenes.py as a module."""
    spec = importlib.util.spec_from_file_location("make_scenes", REPO / "scripts/make_scenes.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_scenes"] = mod
    spec.loader.exec_module(mod)
    return mod


ms = _load_script()
SCENES = ["child_to_bank", "lifebuoy_brief"]


@pytest.fixture(scope="module")
def twice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same scenes generated into two folders."""
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    ms.generate(a, SCENES)
    assert ms.main([str(b), "--only", *SCENES]) == 0
    return a, b


def test_deterministic(twice: tuple[Path, Path]) -> None:
    """Two runs give byte-identical videos, truth and configs."""
    a, b = twice
    for name in SCENES:
        for ext in (".mp4", ".truth.json", ".yaml"):
            assert (a / f"{name}{ext}").read_bytes() == (b / f"{name}{ext}").read_bytes(), ext


def test_configs_load_and_point_at_files(twice: tuple[Path, Path]) -> None:
    """Every config validates; source, outbox and references resolve under OUTDIR."""
    a, _ = twice
    for name in SCENES:
        cfg = load_config(a / f"{name}.yaml")
        assert Path(str(cfg.camera.source)) == a / f"{name}.mp4"
        assert Path(cfg.outbox).parent == a / "var"
        assert cfg.model.path == str(REPO / "models" / "person.pt")
        assert "Normal" in cfg.model.labels["person"]
        assert [e.item for e in cfg.equipment] == ["lifebuoy", "sign"]
        assert cfg.calibrated


def test_video_matches_truth(twice: tuple[Path, Path]) -> None:
    """The clip has the frame count, size and fps the truth file states."""
    a, _ = twice
    truth = json.loads((a / "child_to_bank.truth.json").read_text())
    cap = cv2.VideoCapture(str(a / "child_to_bank.mp4"))
    try:
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(truth["frames"]) == 70
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(truth["fps"])
        ok, frame = cap.read()
        assert ok and frame.shape == (truth["size"][1], truth["size"][0], 3)
    finally:
        cap.release()


def test_stature_geometry_matches_calibration(twice: tuple[Path, Path]) -> None:
    """A pasted child's box height, read with the config's references, gives ~1.1 m."""
    a, _ = twice
    cfg = load_config(a / "child_to_bank.yaml")
    h = 540
    rows = [r.foot[1] for r in cfg.stature.references]
    ppms = [(r.foot[1] - r.head[1]) * h / r.height_m for r in cfg.stature.references]
    slope, icpt = np.polyfit(rows, ppms, 1)
    truth = json.loads((a / "child_to_bank.truth.json").read_text())
    on_bank = [p for f in truth["frames"] for p in f["persons"] if p["zone"] == "bank"]
    assert len(on_bank) > 30
    for p in on_bank:
        box_h = p["box"][3] - p["box"][1]
        assert box_h >= 120, "child must be big enough to detect"
        assert box_h / (slope * p["foot"][1] + icpt) == pytest.approx(1.10, abs=0.06)
        assert p["child"] is True


def test_equipment_truth(twice: tuple[Path, Path]) -> None:
    """lifebuoy_brief: the ring is missing exactly from t=4 s to t=7 s."""
    a, _ = twice
    frames = json.loads((a / "lifebuoy_brief.truth.json").read_text())["frames"]
    gone = [f["t"] for f in frames if not f["lifebuoy"]]
    assert gone[0] == 4.0 and gone[-1] == pytest.approx(6.8)


def test_lifebuoy_drawn_in_roi(twice: tuple[Path, Path]) -> None:
    """Orange pixels sit in the lifebuoy ROI when present and vanish when it is gone."""
    a, _ = twice
    cap = cv2.VideoCapture(str(a / "lifebuoy_brief.mp4"))
    x, y, w, hh = ms.LIFEBUOY_ROI
    counts = []
    for _ in range(25):
        ok, frame = cap.read()
        assert ok
        roi = frame[int(y * 540):int((y + hh) * 540), int(x * 960):int((x + w) * 960)]
        hsv = cv2.cvtColor(roi, cv2.COLOR_BGR2HSV)
        counts.append(int(cv2.inRange(hsv, (0, 120, 120), (20, 255, 255)).sum() // 255))
    cap.release()
    assert min(counts[:20]) > 300 and max(counts[20:]) < 30


def test_unknown_scene_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong --only name exits 2 and names it."""
    assert ms.main([str(tmp_path), "--only", "no_such_scene"]) == 2
    assert "no_such_scene" in capsys.readouterr().err


def test_outdir_required() -> None:
    """Neither OUTDIR nor --demo is a usage error."""
    with pytest.raises(SystemExit) as exc:
        ms.main([])
    assert exc.value.code == 2


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    """--list names every scene, the demo among them."""
    assert ms.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("child_to_bank", "person_submerged", "lens_covered", "camera_nudged"):
        assert name in out


def test_stale_table_digest_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The clip caches key on make_scenes.py's hash: an unpinned scene_table.py edit is refused."""
    monkeypatch.setattr(ms, "TABLE_DIGEST", "0" * 12)
    with pytest.raises(RuntimeError, match="TABLE_DIGEST"):
        ms.generate(tmp_path, ["child_to_bank"])
    assert not (tmp_path / "child_to_bank.mp4").exists()


def test_new_ponds_deterministic(tmp_path: Path) -> None:
    """A clip on each new background comes out byte-identical twice."""
    names = ["child_to_bank_shore", "adult_on_bank_quay"]
    ms.generate(tmp_path / "a", names)
    ms.generate(tmp_path / "b", names)
    for name in names:
        for ext in (".mp4", ".truth.json", ".yaml"):
            assert (tmp_path / "a" / f"{name}{ext}").read_bytes() == \
                (tmp_path / "b" / f"{name}{ext}").read_bytes(), (name, ext)
