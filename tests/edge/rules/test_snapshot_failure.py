"""Never lose the event over its picture: a snapshot or learning frame that cannot be made
still lets the event out, without the picture."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from edge.config import NodeConfig
from edge.link.outbox import Outbox
from edge.rules.pipeline import Emission, Pipeline
from protocol.limits import MAX_SNAPSHOT_BYTES
from tests.edge.conftest import T0
from tests.edge.rules.test_pipeline import ScriptedDetector

IN_WATER = (0.45, 0.70, 0.50, 0.90)  # feet in the water zone (rows 0.62-1.0)


def _noise(h: int, w: int, channels: int = 3) -> np.ndarray:
    """A frame of noise: JPEG cannot shrink it much."""
    return np.random.default_rng(0).integers(0, 255, (h, w, channels), dtype=np.uint8)


def _emissions(cfg: NodeConfig, frame: np.ndarray) -> list[Emission]:
    """What the pipeline emits over 6 s of one person standing in the water."""
    pipe = Pipeline(cfg, ScriptedDetector([(1, IN_WATER)]), idle=False)
    out: list[Emission] = []
    for i in range(30):
        out += pipe.process(frame, i / 5, T0 + timedelta(seconds=i / 5))
    return out


def test_a_snapshot_too_big_for_the_wire_still_lets_the_event_out(
        make_cfg: Callable[..., NodeConfig], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A frame 30000 rows by 63 columns of noise has no JPEG within 150 KB (too narrow to
    shrink): the event is emitted without a snapshot, stored, and the failure logged."""
    [em] = _emissions(make_cfg(), _noise(30000, 63))
    assert em.event.type.value == "person_in_water"
    assert em.snapshot is None and not em.event.snapshot
    assert f"snapshot for {em.event.id} failed: cannot fit a snapshot into " \
           f"{MAX_SNAPSHOT_BYTES} bytes" in caplog.text
    box = Outbox(tmp_path / "o.db")
    assert box.put(em.event, em.snapshot, frame=em.frame)
    [item] = box.due(now=1e12)
    assert item.id == em.event.id and item.snapshot is None and not item.event["snapshot"]


def test_a_frame_that_cannot_be_drawn_still_lets_the_event_out(
        make_cfg: Callable[..., NodeConfig], caplog: pytest.LogCaptureFixture) -> None:
    """A two-channel frame (raw YUYV, as OpenCV gives with RGB conversion off) cannot be
    annotated nor encoded as JPEG: the event still comes out, without a snapshot."""
    [em] = _emissions(make_cfg(), _noise(240, 320, channels=2))
    assert em.event.type.value == "person_in_water"
    assert em.snapshot is None and not em.event.snapshot
    assert f"snapshot for {em.event.id} failed" in caplog.text


def test_a_learning_frame_too_big_still_lets_the_event_and_snapshot_out(
        make_cfg: Callable[..., NodeConfig], caplog: pytest.LogCaptureFixture) -> None:
    """63 rows by 30000 columns: the annotated snapshot fits (its labels cover much of it),
    the raw frame for the learning loop does not; the event keeps its snapshot and boxes."""
    cfg = make_cfg(deploy={"learning_frames": True})
    [em] = _emissions(cfg, _noise(63, 30000))
    assert em.event.severity.value == "critical"
    assert em.snapshot is not None and em.event.snapshot
    assert em.frame is None and not em.event.frame
    assert em.event.boxes == [IN_WATER]
    assert f"frame for {em.event.id} not encoded" in caplog.text
