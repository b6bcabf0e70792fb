"""Fixtures for the vision pipeline tests: configs, real photos, one shared detector."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge.config import NodeConfig

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
WATER = [[0.0, 0.62], [1.0, 0.62], [1.0, 1.0], [0.0, 1.0]]
BANK = [[0.0, 0.40], [1.0, 0.40], [1.0, 0.62], [0.0, 0.62]]
# A 1.75 m reference 0.28 frame heights tall at row 0.60 and 0.16 at row 0.45.
REFS = [{"foot": [0.5, 0.60], "head": [0.5, 0.32], "height_m": 1.75},
        {"foot": [0.3, 0.45], "head": [0.3, 0.29], "height_m": 1.75}]


def _assets() -> Path:
    """Ultralytics' sample photos."""
    import ultralytics
    return Path(ultralytics.__file__).resolve().parent / "assets"


@pytest.fixture(scope="session")
def assets() -> Path:
    """Folder with bus.jpg and zidane.jpg."""
    return _assets()


@pytest.fixture
def make_cfg() -> Callable[..., NodeConfig]:
    """Build a NodeConfig; keyword sections override the defaults."""
    def make(calibrated: bool = True, **over: Any) -> NodeConfig:
        raw: dict[str, Any] = {
            "node_id": "test-01", "pond_id": "test-pond",
            "camera": {"source": "unused.mp4", "fps": 5},
            "model": {"path": "models/person-offline.pt",
                      "labels": {"person": ["person", "Normal", "Fall"], "child": ["child"]}},
            "zones": {"water": WATER, "bank": BANK},
            "stature": {"references": REFS if calibrated else [], "child_max_m": 1.45},
            "rules": {"dwell_s": 1.0, "clear_s": 3.0, "confirm_frames": 3, "submerged_s": 3.0,
                      "reannounce_s": 20.0, "idle_fps": 1.0},
        }
        for k, v in over.items():
            raw[k] = {**raw[k], **v} if isinstance(v, dict) and k in raw else v
        return NodeConfig.model_validate(raw)
    return make


@pytest.fixture(scope="session")
def model_cfg(model_path: Path) -> Any:
    """The offline model's config section."""
    from edge.config import ModelConfig
    return ModelConfig(path=str(model_path), labels={"person": ["person", "Normal", "Fall"]})


@pytest.fixture(scope="session")
def detector(model_cfg: Any) -> Any:
    """One Ultralytics detector for the whole session (reset() between users)."""
    from edge.vision.detector import UltralyticsDetector
    return UltralyticsDetector(model_cfg)


class Replays:
    """Replays each scene once per session with the shared detector."""

    def __init__(self, scenes: Path, out: Path, detector: Any) -> None:
        """Cache of scene → events; each scene's snapshots go to out/<scene>/."""
        self.scenes, self.out, self.detector = scenes, out, detector
        self.cache: dict[str, list[dict[str, Any]]] = {}

    def __call__(self, scene: str) -> list[dict[str, Any]]:
        """The events of one scene, as `pondwatch-edge replay` writes them."""
        from edge.config import load_config
        from edge.replay import replay

        if scene not in self.cache:
            cfg = load_config(self.scenes / f"{scene}.yaml")
            events = self.out / f"{scene}.jsonl"
            rc = replay(cfg, str(self.scenes / f"{scene}.mp4"), str(events),
                        snapshots_dir=str(self.out / scene), detector=self.detector)
            assert rc == 0
            self.cache[scene] = [json.loads(x) for x in events.read_text().splitlines()]
        return self.cache[scene]


@pytest.fixture(scope="session")
def replayed(scenes_dir: Path, tmp_path_factory: pytest.TempPathFactory,
             detector: Any) -> Replays:
    """Session cache of replayed scenes (shared by the replay and background tests)."""
    return Replays(scenes_dir, tmp_path_factory.mktemp("replays"), detector)
