"""Rule state machines on scripted tracks with a fake clock (no model needed)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta

import pytest

from edge.config import NodeConfig
from edge.rules.engine import RuleEngine
from edge.vision.geometry import StatureModel, stature_model
from edge.vision.types import Detection
from protocol.payloads import Event, EventType
from tests.edge.conftest import T0

FPS = 5.0
Script = Callable[[float], Sequence[Detection]]


def person(model: StatureModel | None, tid: int, x: float, foot_y: float, metres: float = 1.75,
           conf: float = 0.8, meaning: str = "person", visible: float = 1.0) -> Detection:
    """A detection of a person of `metres` standing with feet at (x, foot_y); `visible` < 1
    cuts the legs off (water)."""
    h = (model.height_px(foot_y, metres) if model else 0.25) * visible
    return Detection(tid, meaning, "Normal", conf, (x - h / 5, foot_y - h, x + h / 5, foot_y))


def run(cfg: NodeConfig, script: Script, seconds: float) -> list[tuple[float, Event]]:
    """Feed the script at 5 fps on a fake clock; collect (t, event)."""
    engine = RuleEngine(cfg, stature_model(cfg))
    out: list[tuple[float, Event]] = []
    for i in range(int(seconds * FPS) + 1):
        t = i / FPS
        wall = T0 + timedelta(seconds=t)
        out += [(t, e) for e in engine.update(t, wall, script(t))]
    return out


def types(events: list[tuple[float, Event]]) -> list[str]:
    """The event types in order."""
    return [e.type.value for _, e in events]


@pytest.fixture
def cfg(make_cfg: Callable[..., NodeConfig]) -> NodeConfig:
    """Calibrated node, dwell 1 s, clear 3 s, submerged 3 s, re-announce 20 s."""
    return make_cfg()


@pytest.fixture
def sm(cfg: NodeConfig) -> StatureModel:
    """The calibration of cfg."""
    model = stature_model(cfg)
    assert model is not None
    return model


def test_single_frame_ghost_raises_nothing(cfg: NodeConfig, sm: StatureModel) -> None:
    """One confident frame on the bank never becomes a person."""
    ev = run(cfg, lambda t: [person(sm, 7, 0.5, 0.5, 1.1)] if t == 2.0 else [], 10)
    assert ev == []


def test_weak_track_never_confirms(cfg: NodeConfig, sm: StatureModel) -> None:
    """A track below model.conf stays unconfirmed however long it lasts."""
    ev = run(cfg, lambda t: [person(sm, 7, 0.5, 0.5, 1.1, conf=0.2)], 10)
    assert ev == []


def test_child_reaching_bank_gives_one_event_then_end(cfg: NodeConfig, sm: StatureModel) -> None:
    """Field → bank (dwell 1 s) → one child_near_water → leaves → event_end after clear_s."""
    def script(t: float) -> list[Detection]:
        if t < 1 or t > 9:
            return []
        return [person(sm, 1, 0.4, 0.30 if t < 3 else 0.55, 1.10)]
    ev = run(cfg, script, 15)
    assert types(ev) == ["child_near_water", "event_end"]
    (t1, first), (t2, end) = ev
    assert t1 == pytest.approx(4.0)  # on the bank at 3.0 + dwell 1.0
    assert first.severity == "critical" and first.zone == "bank" and first.track_id == 1
    assert first.stature_m == pytest.approx(1.10, abs=0.02)
    assert first.possible_child is False and first.supervised is False
    assert end.ref == first.id and t2 == pytest.approx(9.2 + 3.0, abs=0.21)
    assert first.ts == T0 + timedelta(seconds=4)


def test_flicker_and_reacquisition_continue_the_visit(cfg: NodeConfig, sm: StatureModel) -> None:
    """Gaps shorter than clear_s and a new track id close by do not raise a second event."""
    def script(t: float) -> list[Detection]:
        if 4.0 <= t < 5.6 or t > 14:
            return []
        tid = 1 if t < 4 else 9  # the tracker lost the child and re-acquired it as #9
        return [person(sm, tid, 0.40 + 0.01 * (t > 5), 0.55, 1.10)]
    ev = run(cfg, script, 20)
    assert types(ev) == ["child_near_water", "event_end"]


def test_far_new_track_is_a_new_visit(cfg: NodeConfig, sm: StatureModel) -> None:
    """A second child far away is a second event."""
    def script(t: float) -> list[Detection]:
        out = [person(sm, 1, 0.2, 0.55, 1.1)]
        if t >= 3:
            out.append(person(sm, 2, 0.8, 0.55, 1.1))
        return out
    ev = run(cfg, script, 6)
    assert types(ev) == ["child_near_water", "child_near_water"]
    assert [e.track_id for _, e in ev] == [1, 2]


def test_adult_on_bank_is_info_only(cfg: NodeConfig, sm: StatureModel) -> None:
    """An adult on the bank: person_near_water (info), nothing critical."""
    ev = run(cfg, lambda t: [person(sm, 3, 0.5, 0.55, 1.78)] if t < 6 else [], 12)
    assert types(ev) == ["person_near_water", "event_end"]
    assert ev[0][1].severity == "info" and ev[0][1].stature_m == pytest.approx(1.78, abs=0.02)


def test_uncalibrated_everyone_is_a_possible_child(make_cfg: Callable[..., NodeConfig]) -> None:
    """No references: an adult raises child_near_water with possible_child=true."""
    cfg = make_cfg(calibrated=False)
    ev = run(cfg, lambda t: [person(None, 3, 0.5, 0.55)], 4)
    assert types(ev) == ["child_near_water"]
    e = ev[0][1]
    assert e.possible_child is True and e.stature_m is None and e.supervised is None


def test_model_child_class_wins_over_stature(cfg: NodeConfig, sm: StatureModel) -> None:
    """The model saying "child" makes a tall box a child."""
    ev = run(cfg, lambda t: [person(sm, 3, 0.5, 0.55, 1.8, meaning="child")], 4)
    assert types(ev) == ["child_near_water"]
    assert ev[0][1].possible_child is False


def test_child_who_stays_is_reannounced(cfg: NodeConfig, sm: StatureModel) -> None:
    """reannounce_s 20: at 1 s, 21 s and 41 s; repeats point at the first event."""
    ev = run(cfg, lambda t: [person(sm, 1, 0.5, 0.55, 1.1)], 45)
    assert types(ev) == ["child_near_water"] * 3
    first = ev[0][1]
    assert [t for t, _ in ev] == pytest.approx([1.0, 21.0, 41.0])
    assert all(getattr(e, "repeat_of", None) == first.id for _, e in ev[1:])
    assert len({e.id for _, e in ev}) == 3


def test_adult_beside_child_marks_supervised(cfg: NodeConfig, sm: StatureModel) -> None:
    """The child event says supervised, and is still raised."""
    ev = run(cfg, lambda t: [person(sm, 1, 0.45, 0.55, 1.1), person(sm, 2, 0.52, 0.56, 1.8)], 3)
    kinds = types(ev)
    assert kinds.count("child_near_water") == 1 and kinds.count("person_near_water") == 1
    child = next(e for _, e in ev if e.type == EventType.CHILD_NEAR_WATER)
    assert child.supervised is True


def test_adult_far_away_is_not_supervision(cfg: NodeConfig, sm: StatureModel) -> None:
    """An adult across the pond does not supervise."""
    ev = run(cfg, lambda t: [person(sm, 1, 0.1, 0.55, 1.1), person(sm, 2, 0.9, 0.56, 1.8)], 3)
    child = next(e for _, e in ev if e.type == EventType.CHILD_NEAR_WATER)
    assert child.supervised is False


def test_person_in_water(cfg: NodeConfig, sm: StatureModel) -> None:
    """An adult wading in: person_near_water on the bank, then person_in_water (critical)."""
    def script(t: float) -> list[Detection]:
        y = 0.55 if t < 3 else 0.75
        return [person(sm, 4, 0.5, y, 1.8, visible=1.0 if t < 3 else 0.5)]
    ev = run(cfg, script, 5)
    assert types(ev) == ["person_near_water", "person_in_water"]
    assert ev[1][1].severity == "critical" and ev[1][1].zone == "water"
    assert ev[1][0] == pytest.approx(4.0)


def test_legs_hidden_by_water_do_not_make_a_child(cfg: NodeConfig, sm: StatureModel) -> None:
    """In-water boxes (legs hidden) are left out of the stature median."""
    def script(t: float) -> list[Detection]:
        if t < 2:
            return [person(sm, 4, 0.5, 0.3, 1.8)]  # on the field, fully visible
        return [person(sm, 4, 0.5, 0.8, 1.8, visible=0.4)]
    ev = run(cfg, script, 6)
    assert types(ev) == ["person_in_water"]
    assert ev[0][1].stature_m == pytest.approx(1.8, abs=0.03)


def test_boxes_cut_at_top_or_bottom_are_left_out_of_stature(
        make_cfg: Callable[..., NodeConfig]) -> None:
    """An adult whose feet are below the frame (box cut at the bottom, looks short) walks up
    onto the bank: only the whole boxes are measured, so no child alarm."""
    cfg = make_cfg(zones={"water": [[0.7, 0.0], [1.0, 0.0], [1.0, 0.3], [0.7, 0.3]]})
    sm = stature_model(cfg)
    assert sm is not None

    def script(t: float) -> list[Detection]:
        if t < 1.6:  # only the upper body shows above the bottom edge
            return [Detection(5, "person", "Normal", 0.8, (0.45, 0.85, 0.55, 1.0))]
        return [person(sm, 5, 0.5, 0.55, 1.8)]
    ev = run(cfg, script, 4)
    assert types(ev) == ["person_near_water"]
    assert ev[0][1].stature_m == pytest.approx(1.8, abs=0.02)


def test_box_cut_at_the_side_still_measures(cfg: NodeConfig, sm: StatureModel) -> None:
    """A box cut by the left edge keeps its full height: an adult walking in is an adult."""
    def script(t: float) -> list[Detection]:
        d = person(sm, 5, 0.02 + 0.05 * t, 0.55, 1.8)
        return [Detection(5, "person", "Normal", 0.8, (max(0.0, d.box[0]), *d.box[1:]))]
    ev = run(cfg, script, 4)
    assert types(ev) == ["person_near_water"]


def test_submerged_after_vanishing_in_water(cfg: NodeConfig, sm: StatureModel) -> None:
    """Last seen inside the water, gone for submerged_s: person_submerged; no quiet end."""
    def script(t: float) -> list[Detection]:
        return [person(sm, 4, 0.5, 0.8, 1.8, visible=0.5)] if t <= 4 else []
    ev = run(cfg, script, 20)
    assert types(ev) == ["person_in_water", "person_submerged"]
    t_sub, sub = ev[1]
    assert t_sub == pytest.approx(4.0 + 3.0) and sub.severity == "critical"
    assert sub.track_id == 4 and sub.zone == "water"


def test_leaving_over_the_bank_is_not_submerged(cfg: NodeConfig, sm: StatureModel) -> None:
    """Out of the water onto the bank, then out of view: ends, no submerged."""
    def script(t: float) -> list[Detection]:
        if t <= 3:
            return [person(sm, 4, 0.5, 0.8, 1.8, visible=0.5)]
        if t <= 4:
            return [person(sm, 4, 0.5, 0.5, 1.8)]
        return []
    ev = run(cfg, script, 15)
    assert "person_submerged" not in types(ev)
    assert types(ev).count("event_end") == 1


def test_leaving_over_the_frame_edge_is_not_submerged(cfg: NodeConfig, sm: StatureModel) -> None:
    """Swimming out of the frame on the right: no submerged."""
    def script(t: float) -> list[Detection]:
        if t > 4:
            return []
        d = person(sm, 4, 0.5 + 0.12 * t, 0.8, 1.8, visible=0.5)
        return [Detection(4, "person", "Normal", 0.8, (d.box[0], d.box[1], min(1.0, d.box[2]),
                                                       d.box[3]))]
    ev = run(cfg, script, 15)
    assert "person_submerged" not in types(ev)


def test_resurfacing_ends_the_submerged_event(cfg: NodeConfig, sm: StatureModel) -> None:
    """Seen again close by (new track id) after the alarm: event_end with reason resurfaced."""
    def script(t: float) -> list[Detection]:
        if t <= 4:
            return [person(sm, 4, 0.5, 0.8, 1.8, visible=0.5)]
        if t >= 8:
            return [person(sm, 11, 0.52, 0.8, 1.8, visible=0.5)]
        return []
    ev = run(cfg, script, 10)
    assert types(ev) == ["person_in_water", "person_submerged", "event_end"]
    assert ev[2][1].ref == ev[1][1].id and ev[2][1].reason == "resurfaced"


def test_brief_dip_is_not_submerged(cfg: NodeConfig, sm: StatureModel) -> None:
    """Under for less than submerged_s and back: nothing but the in-water event."""
    def script(t: float) -> list[Detection]:
        return [] if 4 < t < 6 else [person(sm, 4 if t <= 4 else 12, 0.5, 0.8, 1.8, visible=0.5)]
    ev = run(cfg, script, 10)
    assert types(ev) == ["person_in_water"]


def test_weak_frames_keep_a_confirmed_child_present(cfg: NodeConfig, sm: StatureModel) -> None:
    """Once confirmed, low-confidence frames still count as present (no end, no new event)."""
    ev = run(cfg, lambda t: [person(sm, 1, 0.5, 0.55, 1.1, conf=0.8 if t < 2 else 0.15)], 12)
    assert types(ev) == ["child_near_water"]


def test_other_meanings_are_ignored(cfg: NodeConfig) -> None:
    """A lifebuoy on the bank is no person."""
    det = Detection(1, "lifebuoy", "lifebuoy", 0.9, (0.4, 0.45, 0.45, 0.55))
    assert run(cfg, lambda t: [det], 5) == []


def test_replay_ids_are_unique_when_visits_end_together(cfg: NodeConfig,
                                                        sm: StatureModel) -> None:
    """A child near and in the water leaves over the frame edge: both visits end in one frame,
    with two distinct deterministic ids."""
    from edge.replay import replay_ids
    engine = RuleEngine(cfg, sm, replay_ids(cfg.node_id, "clip.mp4"))
    events = []
    for i in range(60):
        t = i / FPS
        x = 0.5 if t < 4 else 0.98  # last seen in the water at the frame edge: no submerged
        dets = [person(sm, 1, x, 0.55 if t < 2 else 0.64, 1.1)] if t < 5 else []
        events += engine.update(t, T0 + timedelta(seconds=t), dets)
    ends = [e for e in events if e.type == EventType.EVENT_END]
    assert len(ends) == 2 and ends[0].id != ends[1].id
    assert len({e.id for e in events}) == len(events)


def test_person_cut_by_the_bottom_edge_in_a_whole_frame_water_zone(
        make_cfg: Callable[..., NodeConfig]) -> None:
    """A swimmer close to the camera, the box cut by the frame's bottom edge (foot y = 1.0) in
    a water zone covering the whole frame, is a person in the water (it was outside every
    zone, so nothing was raised)."""
    cfg = make_cfg(calibrated=False, zones={"water": [[0, 0], [1, 0], [1, 1], [0, 1]],
                                            "bank": []})
    def script(t: float) -> list[Detection]:
        return [Detection(3, "person", "Normal", 0.8, (0.40, 0.55, 0.60, 1.0))]
    assert "person_in_water" in types(run(cfg, script, 5))


def test_child_from_bank_into_water_then_under_raises_one_critical_event_each(
        cfg: NodeConfig, sm: StatureModel) -> None:
    """A child on the bank walks in and goes under: child_near_water on the bank, then one
    person_in_water with the child flag (not a second child_near_water for the same child in
    the water), then person_submerged with the child flag; the bank visit ends."""
    def script(t: float) -> list[Detection]:
        if t <= 3:
            return [person(sm, 4, 0.5, 0.5, 1.1)]
        if t <= 6:
            return [person(sm, 4, 0.5, 0.8, 1.1, visible=0.5)]
        return []
    ev = run(cfg, script, 20)
    critical = [e for _, e in ev if e.severity == "critical"]
    assert [e.type.value for e in critical] == ["child_near_water", "person_in_water",
                                                "person_submerged"]
    assert critical[0].zone == "bank"
    assert critical[1].zone == "water" and critical[1].child is True
    assert critical[2].child is True
    assert types(ev).count("event_end") == 1  # the bank visit; the submerged one is held


def test_adult_in_water_is_flagged_adult_and_uncalibrated_is_unknown(
        cfg: NodeConfig, sm: StatureModel, make_cfg: Callable[..., NodeConfig]) -> None:
    """An adult measured on the bank carries child=False into the water; without a
    calibration nobody can tell, so the flag is left out."""
    def script(t: float) -> list[Detection]:
        return [person(sm, 4, 0.5, 0.5 if t <= 2 else 0.8, 1.8, visible=1 if t <= 2 else 0.5)]
    ev = run(cfg, script, 6)
    water = [e for _, e in ev if e.type == EventType.PERSON_IN_WATER]
    assert len(water) == 1 and water[0].child is False
    assert "child_near_water" not in types(ev)
    bare = make_cfg(calibrated=False)
    ev = run(bare, lambda t: [person(None, 4, 0.5, 0.8, visible=0.5)], 6)
    assert types(ev) == ["person_in_water"] and ev[0][1].child is None


def test_swimmers_are_judged_at_the_water_operating_point(
        make_cfg: Callable[..., NodeConfig]) -> None:
    """A person scored 0.2 is confirmed with feet in the water (conf_water 0.15) but not on the
    bank (conf 0.30): the model is less sure of a head and shoulders in the water."""
    cfg = make_cfg(calibrated=False, model={"conf": 0.30, "conf_water": 0.15})
    assert (cfg.model.conf_at("water"), cfg.model.conf_at("bank")) == (0.15, 0.30)
    in_water = run(cfg, lambda t: [Detection(3, "person", "Normal", 0.2,
                                             (0.45, 0.70, 0.55, 0.80))], 5)
    assert "person_in_water" in types(in_water)
    on_bank = run(cfg, lambda t: [Detection(4, "person", "Normal", 0.2,
                                            (0.45, 0.30, 0.55, 0.50))], 5)
    assert on_bank == []
    plain = make_cfg(calibrated=False, model={"conf": 0.30})   # no water point: conf
    assert run(plain, lambda t: [Detection(3, "person", "Normal", 0.2,
                                           (0.45, 0.70, 0.55, 0.80))], 5) == []
