"""The pipeline end to end on frames: idle gate, stats, snapshots, wake-up."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.camera.sources import open_source
from edge.config import NodeConfig, load_config
from edge.rules.pipeline import Pipeline
from edge.vision.motion import MotionGate
from edge.vision.snapshot import Mark, encode_jpeg, snapshot
from protocol.limits import MAX_SNAPSHOT_BYTES
from tests.edge.conftest import T0


def still(value: int = 90) -> np.ndarray:
    """A textured static frame."""
    rng = np.random.default_rng(1)
    img = np.full((240, 320, 3), value, np.uint8)
    img[::8, :, :] = rng.integers(0, 255, (30, 320, 3), dtype=np.uint8)
    return img


def test_gate_goes_idle_when_still_and_wakes_on_motion() -> None:
    """Still for quiet_s: detection at idle_fps; a change runs at once and stays awake."""
    gate = MotionGate(full_fps=5, idle_fps=1, quiet_s=3)
    runs, idle = [], []
    for i in range(50):  # 10 s still
        runs.append(gate.should_detect(still(), i / 5))
        idle.append(gate.idle)
    assert all(runs[:15]) and not any(idle[:15])  # every frame of the first quiet_s
    assert all(idle[15:])
    assert sum(runs[15:]) == 7  # one per second once idle
    moved = still()
    cv2.rectangle(moved, (100, 100), (160, 200), (255, 255, 255), -1)
    assert gate.should_detect(moved, 10.2) and not gate.idle
    assert gate.should_detect(moved, 10.4)  # still within quiet_s after the motion


def test_gate_wake_and_busy_force_full_rate() -> None:
    """wake() (PIR) runs the next frame; busy (someone in the water) keeps full rate."""
    gate = MotionGate(full_fps=5, idle_fps=0.5, quiet_s=1)
    for i in range(20):
        gate.should_detect(still(), i / 5)
    assert gate.idle and not gate.should_detect(still(), 4.0)
    gate.wake()
    assert gate.should_detect(still(), 4.2) and not gate.idle
    assert all(gate.should_detect(still(), 5 + i / 5, busy=True) for i in range(20))


def test_snapshot_fits_the_wire_limit_even_for_noise(make_cfg: Callable[..., NodeConfig]) -> None:
    """A 12 MP frame of noise still becomes a JPEG within 150 KB."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)
    data = snapshot(frame, make_cfg(), [Mark((0.1, 0.2, 0.3, 0.9), "#1 1.10 m child", True)])
    assert len(data) <= MAX_SNAPSHOT_BYTES
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None


def test_snapshot_limit_too_small_is_an_error() -> None:
    """An impossible limit raises instead of looping forever."""
    with pytest.raises(ValueError):
        encode_jpeg(np.zeros((100, 100, 3), np.uint8), limit=10)


def test_snapshot_draws_zones_and_boxes(make_cfg: Callable[..., NodeConfig]) -> None:
    """The annotated picture differs from the frame inside the box and the water zone."""
    frame = np.full((360, 640, 3), 128, np.uint8)
    data = snapshot(frame, make_cfg(), [Mark((0.4, 0.2, 0.5, 0.55), "#3 1.10 m child", True)])
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    x1, y1 = int(0.4 * 639), int(0.2 * 359)
    assert img[y1 + 30, x1, 2] > 180 and img[y1 + 30, x1, 0] < 110  # red edge (child)
    assert abs(int(img[340, 320, 0]) - 128) > 10  # water tint


def test_pipeline_on_a_photo_reports_stats(detector: Any, assets: Path,
                                           make_cfg: Callable[..., NodeConfig]) -> None:
    """bus.jpg, feet on the "bank" below row 0.8: people are tracked, stats counted."""
    cfg = make_cfg(zones={"water": [[0, 0.95], [1, 0.95], [1, 1], [0, 1]],
                          "bank": [[0, 0.75], [1, 0.75], [1, 0.95], [0, 0.95]]},
                   stature={"references": [], "child_max_m": 1.45})
    detector.reset()
    pipe = Pipeline(cfg, detector)
    bus = cv2.imread(str(assets / "bus.jpg"))
    events = []
    for i in range(8):
        events += pipe.process(bus, i / 5, T0 + timedelta(seconds=i / 5))
    assert pipe.stats.frames == 8 and pipe.stats.last_inference_ms > 0
    assert pipe.stats.fps == pytest.approx(5.0)
    kinds = [e.event.type.value for e in events]
    assert kinds and set(kinds) == {"child_near_water"}  # uncalibrated: possible children
    assert all(e.event.possible_child and e.snapshot and e.event.snapshot for e in events)
    assert len(pipe.marks()) >= 3


def test_idle_mode_on_a_static_scene(scenes_dir: Path, detector: Any) -> None:
    """empty_static: after the quiet period the detector runs about once a second."""
    cfg = load_config(scenes_dir / "empty_static.yaml")
    detector.reset()
    pipe = Pipeline(cfg, detector)
    src = open_source(str(scenes_dir / "empty_static.mp4"), cfg.camera.fps)
    while (item := src.read()) is not None:
        assert pipe.process(item[0], item[1], T0) == []
    assert pipe.stats.idle
    assert pipe.stats.detected_frames <= pipe.stats.frames // 2


class ScriptedDetector:
    """Returns the same tracked boxes every frame (the model's output, scripted)."""

    def __init__(self, boxes: list[tuple[int, tuple[float, float, float, float]]]) -> None:
        self.boxes = boxes

    def predict(self, crops: Any, imgsz: int, floor: float) -> list[list[Any]]:
        return [[] for _ in crops]

    def label(self, c: Any, w: int, h: int) -> Any:
        raise AssertionError("predict returns nothing to label")

    def track(self, frame: np.ndarray, detections: Any = None) -> list[Any]:
        from edge.vision.types import Detection
        return [Detection(tid, "person", "Normal", 0.6, box) for tid, box in self.boxes]

    def reset(self) -> None:
        pass


def _run(cfg: NodeConfig, boxes: list[tuple[int, tuple[float, float, float, float]]],
         before: list[tuple[int, tuple[float, float, float, float]]] | None = None
         ) -> list[str]:
    """Events from 30 frames of boxes, after 5 frames of `before` (if given)."""
    det = ScriptedDetector(before or boxes)
    pipe = Pipeline(cfg, det, idle=False, snapshots=False)
    frame = still()
    types: list[str] = []
    for i in range(35 if before else 30):
        if before and i == 5:
            det.boxes = boxes
        types += [em.event.type.value for em in pipe.process(frame, i / 5,
                                                              T0 + timedelta(seconds=i / 5))]
    return types


def test_lifebuoy_read_as_a_small_person_raises_nothing(
        make_cfg: Callable[..., NodeConfig]) -> None:
    """A 'person' box that fits inside the lifebuoy's area is the lifebuoy, not a child."""
    cfg = make_cfg(equipment=[{"item": "lifebuoy", "roi": [0.05, 0.40, 0.08, 0.14]}])
    ring = (0.07, 0.45, 0.11, 0.53)  # on the bank, ~0.63 m by the calibration
    assert _run(cfg, [(1, ring)]) == []
    assert _run(make_cfg(), [(1, ring)]) == ["child_near_water"], "without the kit: a child"


def test_child_in_front_of_the_lifebuoy_is_still_a_child(
        make_cfg: Callable[..., NodeConfig]) -> None:
    """A child taller than the kit's area, standing in front of it, still raises the alarm."""
    cfg = make_cfg(equipment=[{"item": "lifebuoy", "roi": [0.05, 0.40, 0.08, 0.14]}])
    child = (0.05, 0.38, 0.12, 0.56)
    assert _run(cfg, [(1, child)]) == ["child_near_water"]


def test_small_child_walking_up_to_the_lifebuoy_is_still_a_child(
        make_cfg: Callable[..., NodeConfig]) -> None:
    """A toddler as small as the ring who came from outside its area raises the alarm."""
    cfg = make_cfg(equipment=[{"item": "lifebuoy", "roi": [0.05, 0.40, 0.08, 0.14]}])
    ring_sized = (0.07, 0.45, 0.11, 0.53)
    outside = (0.30, 0.45, 0.34, 0.53)
    assert _run(cfg, [(1, ring_sized)], before=[(1, outside)]) == ["child_near_water"]
