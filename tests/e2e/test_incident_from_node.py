"""The node's rule engine and the server's alert state machine together: a child on the bank
walks into the water and goes under → the node raises child_near_water, person_in_water
(child) and person_submerged (child); the server opens one alert and pages three times (new,
in water, submerged), one timeline. Same fake time on both sides, the real ingest code path."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from edge.config import NodeConfig
from edge.rules.engine import RuleEngine
from edge.vision.geometry import stature_model
from edge.vision.types import Detection
from protocol.payloads import encode
from server.core.db import Alert, TimelineEntry
from server.link.ingest import Inbound
from tests.edge.conftest import BANK, REFS, WATER
from tests.server.alerting.test_escalation import Harness
from tests.server.conftest import PageReceiver

FPS = 5.0


@pytest.fixture
def receiver() -> Iterator[PageReceiver]:
    """The page receiver (tests/server's fixture is not visible here)."""
    r = PageReceiver()
    yield r
    r.close()


def node_config() -> NodeConfig:
    """The registered node heyuan-01 at heyuan-shantang, calibrated."""
    return NodeConfig.model_validate({
        "node_id": "heyuan-01", "pond_id": "heyuan-shantang",
        "camera": {"source": "unused.mp4", "fps": FPS},
        "model": {"path": "models/person-offline.pt", "conf": 0.25,
                  "labels": {"person": ["person"], "child": ["child"]}},
        "zones": {"water": WATER, "bank": BANK},
        "stature": {"references": REFS, "child_max_m": 1.45},
        "rules": {"dwell_s": 1.0, "clear_s": 3.0, "confirm_frames": 3, "submerged_s": 3.0,
                  "reannounce_s": 20.0, "idle_fps": 1.0}})


def test_child_walks_in_and_goes_under_one_alert_three_pages(tmp_path: Path,
                                                              receiver: PageReceiver) -> None:
    cfg = node_config()
    sm = stature_model(cfg)
    assert sm is not None

    def child(foot_y: float, visible: float = 1.0) -> Detection:
        h = sm.height_px(foot_y, 1.1) * visible
        return Detection(4, "person", "person", 0.8, (0.5 - h / 5, foot_y - h, 0.5 + h / 5,
                                                      foot_y))

    h = Harness(tmp_path, receiver)
    try:
        engine = RuleEngine(cfg, sm)
        start = h.clock.now()
        seen_types = []
        for i in range(int(20 * FPS) + 1):
            t = i / FPS
            dets = [child(0.5)] if t <= 3 else ([child(0.8, 0.5)] if t <= 6 else [])
            h.clock.set(start + timedelta(seconds=t))
            for ev in engine.update(t, h.clock.now(), dets):
                seen_types.append(ev.type.value)
                h.ing.process(Inbound("pondwatch/v1/node/heyuan-01/event", encode(ev), 1, 1))
                h.tick()
        assert [k for k in seen_types if k != "event_end"] == [
            "child_near_water", "person_in_water", "person_submerged"]
        with h.svc.sessions() as s:
            alert = s.scalars(select(Alert)).one()
            assert alert.kind == "person_submerged" and alert.child is True
            timeline = s.scalars(select(TimelineEntry).where(
                TimelineEntry.alert_id == alert.id)).all()
            assert {r.alert_id for r in timeline} == {alert.id}
            assert [r.detail for r in timeline if r.kind == "upgrade"] == [
                "child_near_water -> person_in_water", "person_in_water -> person_submerged"]
        assert [p["title"] for p in receiver.pages] == [
            "【紧急】禾源山塘：儿童在岸边", "【紧急·升级】禾源山塘：儿童已落水",
            "【紧急·升级】禾源山塘：儿童已没入水中"]
    finally:
        h.close()
