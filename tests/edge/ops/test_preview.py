"""pondwatch-edge preview: a PNG with zones, equipment boxes and the stature ruler."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edge.config import NodeConfig, load_config
from edge.ops.preview import RULER_BGR, preview, render_preview, ruler_rows
from edge.vision.geometry import stature_model

ROOT = Path(__file__).resolve().parents[3]


def test_preview_cli_on_a_scene_video(scenes_dir: Path, tmp_path: Path) -> None:
    """The CLI writes a PNG of the video's size that differs from the raw frame."""
    out = tmp_path / "p.png"
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "preview", str(scenes_dir / "child_to_bank.yaml"),
         "--source", str(scenes_dir / "child_to_bank.mp4"), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    img = cv2.imread(str(out))
    cap = cv2.VideoCapture(str(scenes_dir / "child_to_bank.mp4"))
    ok, raw = cap.read()
    cap.release()
    assert ok and img is not None and img.shape == raw.shape
    assert np.mean(cv2.absdiff(img, raw)) > 2


def test_ruler_bars_have_the_calibrated_height(make_cfg: Callable[..., NodeConfig]) -> None:
    """The 1.75 m bar at the last ruler row spans the height the calibration predicts."""
    cfg = make_cfg(equipment=[{"item": "lifebuoy", "roi": [0.05, 0.3, 0.08, 0.14]}])
    frame = np.full((600, 800, 3), 30, np.uint8)
    img = render_preview(frame, cfg)
    model = stature_model(cfg)
    assert model is not None
    rows = ruler_rows(model, 0.62)
    row = rows[-1]
    x = int((0.9 + 0.014) * 799)  # last group, third bar (1.75 m)
    column = img[:, x - 1:x + 2].reshape(-1, 3)
    green = np.where(np.all(np.abs(column.astype(int) - RULER_BGR["1.75 m"]) < 60, axis=1))[0]
    top, bottom = green.min() / 3 / 599, green.max() / 3 / 599
    assert abs(bottom - row) < 0.02
    assert abs((row - top) - model.height_px(row, 1.75)) < 0.02
    assert np.any(np.all(img[int(0.3 * 599) + 2] == (255, 0, 255), axis=1))  # equipment box


def test_uncalibrated_preview_says_so(make_cfg: Callable[..., NodeConfig]) -> None:
    """Without references the picture carries a red warning band instead of a ruler."""
    img = render_preview(np.full((400, 600, 3), 30, np.uint8), make_cfg(calibrated=False))
    assert np.any(np.all(img[200:240] == (0, 0, 255), axis=2))


def test_preview_from_an_image_and_bad_sources(scenes_dir: Path, tmp_path: Path,
                                               assets: Path) -> None:
    """An image works; a missing source or an unwritable output is exit code 2."""
    cfg = load_config(scenes_dir / "child_to_bank.yaml")
    assert preview(cfg, str(assets / "bus.jpg"), str(tmp_path / "a.png")) == 0
    assert cv2.imread(str(tmp_path / "a.png")) is not None
    assert preview(cfg, str(tmp_path / "missing.jpg"), str(tmp_path / "b.png")) == 2
    (tmp_path / "file").write_text("x")
    assert preview(cfg, str(assets / "bus.jpg"), str(tmp_path / "file" / "c.png")) == 2
