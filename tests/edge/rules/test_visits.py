"""One event per person per visit, through id switches forced by occlusion (issue 10)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.camera.sources import open_source
from edge.config import NodeConfig, load_config
from edge.replay import EPOCH
from edge.rules.pipeline import Pipeline
from edge.vision.detector import UltralyticsDetector
from edge.vision.geometry import StatureModel, stature_model
from edge.vision.tracking import tracker_path
from edge.vision.types import Detection
from tests.edge.conftest import Replays
from tests.edge.rules.test_engine import person, run, types

SCENES = {  # scene → expected event types, in any order
    "children_side_by_side": ["child_near_water", "child_near_water"],
    "child_adult_crossing": ["child_near_water", "person_near_water"],
}


@pytest.fixture
def sm(make_cfg: Callable[..., NodeConfig]) -> StatureModel:
    """The calibration of the test config."""
    model = stature_model(make_cfg())
    assert model is not None
    return model


def test_box_around_two_children_is_not_a_third(make_cfg: Callable[..., NodeConfig],
                                                sm: StatureModel) -> None:
    """Side by side, the detector also boxes both children as one 'person' for 2 s: that
    track is a split of the visits already open, not a third child."""
    def script(t: float) -> list[Detection]:
        a, b = person(sm, 1, 0.40, 0.55, 1.1), person(sm, 2, 0.46, 0.55, 1.1)
        out = [a, b]
        if 3.0 <= t < 5.0:
            both = (a.box[0], min(a.box[1], b.box[1]), b.box[2], max(a.box[3], b.box[3]))
            out.append(Detection(3, "person", "Normal", 0.5, both))
        return out
    assert types(run(make_cfg(), script, 8)) == ["child_near_water", "child_near_water"]


def test_second_child_beside_the_first_still_counts(make_cfg: Callable[..., NodeConfig],
                                                    sm: StatureModel) -> None:
    """A child who walks up beside an alerted one (boxes apart) is a second event."""
    def script(t: float) -> list[Detection]:
        out = [person(sm, 1, 0.40, 0.55, 1.1)]
        if t >= 3.0:
            out.append(person(sm, 2, 0.47, 0.55, 1.1))
        return out
    ev = run(make_cfg(), script, 8)
    assert types(ev) == ["child_near_water", "child_near_water"]
    assert [e.track_id for _, e in ev] == [1, 2]


def test_new_track_where_one_was_just_lost_continues_the_visit(
        make_cfg: Callable[..., NodeConfig], sm: StatureModel) -> None:
    """Two children; #2 is hidden for a second and comes back as #5: still two events."""
    def script(t: float) -> list[Detection]:
        out = [person(sm, 1, 0.40, 0.56, 1.1)]
        if t < 4.0:
            out.append(person(sm, 2, 0.55, 0.53, 1.1))
        elif t >= 5.0:
            out.append(person(sm, 5, 0.56, 0.53, 1.1))
        return out
    ev = run(make_cfg(), script, 9)
    assert types(ev) == ["child_near_water", "child_near_water"]


@pytest.mark.parametrize("scene", sorted(SCENES))
def test_occlusion_scenes_give_one_event_per_person(replayed: Replays, scene: str) -> None:
    """With the shipped tracker: exactly the expected events, each for its own track."""
    events = replayed(scene)
    got = sorted(e["type"] for e in events if e["type"] != "event_end")
    assert got == sorted(SCENES[scene]), got
    assert len({e["track_id"] for e in events}) == len(events)


def _forgetful(tmp_path: Path) -> Path:
    """The shipped tracker, but it forgets a lost person after one frame."""
    text = tracker_path("pondwatch.yaml").read_text()
    path = tmp_path / "forgetful.yaml"
    path.write_text(text.replace("track_buffer: 50", "track_buffer: 1"))
    assert "track_buffer: 1" in path.read_text()
    return path


@pytest.mark.parametrize("scene", sorted(SCENES))
def test_forced_id_switches_still_give_one_event_per_person(
        scenes_dir: Path, tmp_path: Path, model_cfg: Any, scene: str) -> None:
    """Occlusion with a tracker that forgets at once: ids switch, the visits hold."""
    cfg = load_config(scenes_dir / f"{scene}.yaml")
    model = cfg.model.model_copy(update={"tracker": str(_forgetful(tmp_path))})
    cfg = cfg.model_copy(update={"model": model})
    pipe = Pipeline(cfg, UltralyticsDetector(model), snapshots=False)
    src = open_source(str(scenes_dir / f"{scene}.mp4"), cfg.camera.fps)
    ids: Counter[int | None] = Counter()
    got = []
    while (item := src.read()) is not None:
        frame, t = item
        got += [em.event.type.value for em in pipe.process(frame, t,
                                                           EPOCH + timedelta(seconds=t))]
        ids.update(d.track_id for d in pipe.last_detections if d.meaning == "person")
    src.close()
    steady = [i for i, n in ids.items() if n >= 3]
    assert len(steady) > 2, f"no id switch happened: {dict(ids)}"
    assert sorted(k for k in got if k != "event_end") == sorted(SCENES[scene]), got
