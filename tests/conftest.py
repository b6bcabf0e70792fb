"""Shared fixtures: a real Mosquitto on loopback, the offline model, generated scenes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.link.broker import Mosquitto

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh Mosquitto (anonymous, loopback only) for one test."""
    with Mosquitto(data_dir=tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The offline person detector fetched by scripts/fetch_model.py."""
    path = ROOT / "models" / "person-offline.pt"
    if not path.exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_model.py"),
                        "--model", "person-offline"], check=True, cwd=ROOT)
    return path


@pytest.fixture(scope="session")
def scenes_dir(model_path: Path) -> Path:
    """Generated test clips and node configs, cached by the generator's content hash."""
    script = ROOT / "scripts" / "make_scenes.py"
    table = ROOT / "scripts" / "scene_table.py"
    digest = hashlib.sha256(script.read_bytes() + table.read_bytes()).hexdigest()[:12]
    out = ROOT / "build" / f"scenes-{digest}"
    if not (out / ".complete").exists():
        subprocess.run([sys.executable, str(script), str(out), "--model", str(model_path)],
                       check=True, cwd=ROOT)
        (out / ".complete").write_text("ok\n")
    return out
