"""The shipped tracker config and the motion gate with weak, still people (issue 10)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from edge.config import NodeConfig
from edge.rules.pipeline import Pipeline
from edge.vision.tracking import TrackerError, new_tracker, track_update, tracker_path
from edge.vision.types import Candidate, Detection
from tests.edge.conftest import T0

W, H = 960, 540
WEAK = (0.27, 0.31, 0.25, 0.34, 0.29, 0.33, 0.26, 0.35, 0.30)  # a child the model is unsure of
WEAKEST = (0.27, 0.29, 0.25, 0.30, 0.28, 0.26, 0.29)           # ... and never above 0.30
CHILD = (0.47, 0.40, 0.51, 0.55)   # 1.1 m tall with feet on the bank (calibration in conftest)


class ScriptedModel:
    """The model's output scripted frame by frame, tracked by the real Ultralytics tracker."""

    def __init__(self, tracker: str, confs: Sequence[float], box: tuple[float, ...],
                 start: int = 0) -> None:
        self.tracker = new_tracker(tracker)
        self.confs, self.box, self.i, self.start = confs, box, 0, start

    def predict(self, crops: Sequence[np.ndarray], imgsz: int, floor: float
                ) -> list[list[Candidate]]:
        h, w = crops[0].shape[:2]
        conf = self.confs[self.i % len(self.confs)] if self.i >= self.start else 0.0
        jitter = (self.i % 3 - 1) * 0.5           # standing still: a pixel of box noise
        self.i += 1
        x1, y1, x2, y2 = self.box
        first = [Candidate((x1 * w + jitter, y1 * h, x2 * w + jitter, y2 * h), conf, 0)]
        return [first if conf >= floor else []] + [[] for _ in crops[1:]]

    def label(self, c: Candidate, w: int, h: int) -> Detection:
        b = c.box
        return Detection(None, "person", "Normal", c.conf, (b[0] / w, b[1] / h, b[2] / w,
                                                             b[3] / h))

    def track(self, frame: np.ndarray, detections: Sequence[Detection] | None = None
              ) -> list[Detection]:
        return track_update(self.tracker, frame, detections or [])

    def reset(self) -> None:
        self.tracker.reset()


def _still(cfg: NodeConfig) -> NodeConfig:
    """The config with the whole frame as one view (the scripted boxes are frame boxes)."""
    return cfg.model_copy(update={"model": cfg.model.model_copy(
        update={"zones_region": False, "zoom_windows": 0})})


def _child_events(cfg: NodeConfig, tracker: str, confs: Sequence[float] = WEAK,
                  seconds: float = 5.0) -> tuple[list[tuple[float, str]], Pipeline]:
    """(t, type) of every event; the weak child steps out (from behind the reeds, say) at
    t = 1 s and stands still on the bank. (A track born on the tracker's very first frame is
    activated at once, which would hide the defect.)"""
    pipe = Pipeline(_still(cfg), ScriptedModel(tracker, confs, CHILD, start=5), idle=False,
                    snapshots=False)
    frame = np.full((H, W, 3), 120, np.uint8)
    out = []
    for i in range(int(seconds * 5)):
        t = i / 5
        out += [(t, em.event.type.value)
                for em in pipe.process(frame, t, T0 + timedelta(seconds=t))]
    return out, pipe


@pytest.mark.parametrize("confs", [WEAK, WEAKEST], ids=["0.25-0.35", "0.25-0.30"])
def test_weak_still_child_is_alerted_within_dwell_plus_one_second(
        make_cfg: Callable[..., NodeConfig], confs: Sequence[float]) -> None:
    """Confidence 0.25-0.35, standing still: child_near_water within dwell + 1 s."""
    cfg = make_cfg()
    events, _ = _child_events(cfg, "pondwatch.yaml", confs)
    assert [k for _, k in events] == ["child_near_water"]
    assert events[0][0] - 1.0 <= cfg.rules.dwell_s + 1.0


def test_ultralytics_default_tracker_loses_the_weak_child(
        make_cfg: Callable[..., NodeConfig]) -> None:
    """The reason pondwatch.yaml exists: with score fusion the child never becomes a track."""
    events, _ = _child_events(make_cfg(), "bytetrack.yaml", WEAKEST)
    assert events == []


def test_shipped_tracker_settings() -> None:
    """fuse_score off and thresholds low enough for 0.25; found by name in edge/vision/trackers/."""
    import yaml
    path = tracker_path("pondwatch.yaml")
    assert path.parent.name == "trackers" and path.parent.parent.name == "vision"
    s = yaml.safe_load(path.read_text())
    assert s["fuse_score"] is False
    assert s["track_high_thresh"] <= 0.25 and s["new_track_thresh"] <= 0.25


def test_bad_tracker_configs_are_refused(tmp_path: Path) -> None:
    """Unknown names, other tracker types and ReID are refused with the reason."""
    with pytest.raises(TrackerError, match="not found"):
        new_tracker("nope.yaml")
    odd = tmp_path / "odd.yaml"
    odd.write_text("tracker_type: deepocsort\n")
    with pytest.raises(TrackerError, match="bytetrack or botsort"):
        new_tracker(str(odd))
    reid = tmp_path / "reid.yaml"
    reid.write_text((Path(tracker_path("botsort.yaml"))).read_text().replace(
        "with_reid: False", "with_reid: True"))
    with pytest.raises(TrackerError, match="ReID"):
        new_tracker(str(reid))


def test_motion_gate_stays_awake_while_anyone_is_in_a_zone(
        make_cfg: Callable[..., NodeConfig]) -> None:
    """A still scene with a weak, never-confirmed person on the bank: never idle.

    The person is scripted at 0.22-0.28 with conf 0.35, so the rules never confirm them;
    the gate must still keep the detector at full rate (the frames do not change at all).
    """
    cfg = make_cfg(model={"conf": 0.35})
    pipe = Pipeline(_still(cfg), ScriptedModel("pondwatch.yaml", (0.22, 0.28, 0.25), CHILD),
                    snapshots=False)
    frame = np.full((H, W, 3), 120, np.uint8)
    for i in range(60):                       # 12 s, four times the gate's quiet period
        pipe.process(frame, i / 5, T0)
        assert not pipe.stats.idle, i
    assert pipe.stats.detected_frames == 60
    assert not any(tr.confirmed for tr in pipe.rules.tracks.values())


def test_motion_gate_idles_when_nobody_is_there(make_cfg: Callable[..., NodeConfig]) -> None:
    """The same still scene with nobody in it goes idle after the quiet period."""
    pipe = Pipeline(_still(make_cfg()), ScriptedModel("pondwatch.yaml", (0.0,), CHILD),
                    snapshots=False)
    frame = np.full((H, W, 3), 120, np.uint8)
    for i in range(60):
        pipe.process(frame, i / 5, T0)
    assert pipe.stats.idle and pipe.stats.detected_frames < 40
