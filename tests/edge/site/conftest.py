"""Fixtures of the site tests: generated clips, their truth and references enrolled once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import NodeConfig, load_config
from edge.site.enrol import enrol

W, H = 960, 540


def frames(path: Path) -> Iterator[tuple[int, np.ndarray]]:
    """Every frame of a clip with its index."""
    cap = cv2.VideoCapture(str(path))
    try:
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield i, frame
            i += 1
    finally:
        cap.release()


def truth_boxes(scenes_dir: Path, scene: str) -> list[list[list[float]]]:
    """Per frame, the generator's person boxes normalised to x1, y1, x2, y2."""
    meta = json.loads((scenes_dir / f"{scene}.truth.json").read_text())
    return [[[b[0] / W, b[1] / H, b[2] / W, b[3] / H] for b in (p["box"] for p in f["persons"])]
            for f in meta["frames"]]


def scene_cfg(scenes_dir: Path, scene: str, refs: Path) -> NodeConfig:
    """The scene's config with references moved under refs (the shared scene cache stays clean)."""
    cfg = load_config(scenes_dir / f"{scene}.yaml")
    eq = [e.model_copy(update={"reference": str(refs / f"{e.item}.png")}) for e in cfg.equipment]
    return cfg.model_copy(update={"equipment": eq})


@pytest.fixture(scope="session")
def refs(scenes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """References enrolled once from the empty scene (same pond as every equipment scene)."""
    out = tmp_path_factory.mktemp("refs")
    cfg = scene_cfg(scenes_dir, "empty_static", out)
    assert enrol(cfg, out / "node.yaml", source=str(scenes_dir / "empty_static.mp4")) == 0
    return out
