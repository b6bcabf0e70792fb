"""The torch-free ByteTrack (edge.vision.bytetrack) set from the shipped tracker YAML."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from edge.config import NodeConfig
from edge.rules.pipeline import Pipeline
from edge.vision.bytetrack import ByteTrack
from edge.vision.tracking import TrackerError
from edge.vision.types import Detection
from tests.edge.conftest import T0
from tests.edge.vision.test_tracking import CHILD, WEAK, WEAKEST, H, ScriptedModel, W, _still

FRAME = np.zeros((100, 200, 3), np.uint8)


def person(x: float, conf: float = 0.8) -> Detection:
    """A person box at x (normalised), 0.1 wide."""
    return Detection(None, "person", "Normal", conf, (x, 0.2, x + 0.1, 0.8))


def test_tracks_are_confirmed_on_their_second_frame_and_keep_their_id() -> None:
    """Ids count from 1 (as Ultralytics'); a track is confirmed on its second matched frame;
    a weak box (the second stage) keeps a track's id; reset starts again from 1."""
    bt = ByteTrack("pondwatch.yaml")
    assert bt.update(FRAME, [person(0.1), person(0.5)]) == []
    assert sorted(d.track_id for d in bt.update(FRAME, [person(0.11), person(0.5),
                                                        person(0.8)])) == [1, 2]
    assert {d.box[0]: d.track_id for d in bt.update(FRAME, [person(0.12), person(0.8)])} == {
        0.12: 1, 0.8: 3}
    again = bt.update(FRAME, [person(0.13), person(0.5, 0.15), person(0.8)])  # weak: 2nd stage
    assert sorted(d.track_id for d in again) == [1, 2, 3]
    assert again[0].box == person(0.13).box            # the detector's box, not the Kalman one
    bt.reset()
    bt.update(FRAME, [person(0.4)])
    assert [d.track_id for d in bt.update(FRAME, [person(0.4)])] == [1]


def test_detections_below_the_low_threshold_are_not_tracked() -> None:
    """track_low_thresh (0.1) drops a box, even one overlapping a track."""
    bt = ByteTrack("pondwatch.yaml")
    bt.update(FRAME, [person(0.1)])
    bt.update(FRAME, [person(0.1)])
    assert bt.update(FRAME, [person(0.1, 0.05)]) == []


class NumpyScriptedModel(ScriptedModel):
    """The scripted model of test_tracking, tracked by the torch-free ByteTrack."""

    def __init__(self, tracker: str, confs: Sequence[float], box: tuple[float, ...],
                 start: int = 0) -> None:
        super().__init__(tracker, confs, box, start)
        self.tracker = ByteTrack(tracker)

    def track(self, frame: np.ndarray, detections: Sequence[Detection] | None = None
              ) -> list[Detection]:
        return self.tracker.update(frame, detections or [])


@pytest.mark.parametrize("confs", [WEAK, WEAKEST], ids=["0.25-0.35", "0.25-0.30"])
def test_weak_still_child_is_alerted_within_dwell_plus_one_second(
        make_cfg: Callable[..., NodeConfig], confs: Sequence[float]) -> None:
    """The issue-10 case on the torch-free tracker: a child at 0.25-0.35 stepping out at 1 s and
    standing still gives child_near_water within dwell + 1 s."""
    cfg = make_cfg()
    pipe = Pipeline(_still(cfg), NumpyScriptedModel("pondwatch.yaml", confs, CHILD, start=5),
                    idle=False, snapshots=False)
    frame = np.full((H, W, 3), 120, np.uint8)
    events = []
    for i in range(25):
        t = i / 5
        events += [(t, em.event.type.value)
                   for em in pipe.process(frame, t, T0 + timedelta(seconds=t))]
    assert [k for _, k in events] == ["child_near_water"]
    assert events[0][0] - 1.0 <= cfg.rules.dwell_s + 1.0


def test_trackers_it_cannot_run_are_refused(tmp_path: Path) -> None:
    """Ultralytics' own YAMLs (not read without it), botsort and fuse_score are refused."""
    with pytest.raises(TrackerError, match="not found"):
        ByteTrack("bytetrack.yaml")
    shipped = Path(__file__).resolve().parents[3] / "edge/vision/trackers/pondwatch.yaml"
    for name, old, new, why in (("bot.yaml", "bytetrack", "botsort", "bytetrack only"),
                                ("fuse.yaml", "fuse_score: False", "fuse_score: True",
                                 "fuse_score"),
                                ("gap.yaml", "match_thresh: 0.8\n", "", "match_thresh")):
        p = tmp_path / name
        p.write_text(shipped.read_text().replace(old, new))
        with pytest.raises(TrackerError, match=why):
            ByteTrack(str(p))
