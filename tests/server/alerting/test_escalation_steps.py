"""Escalation steps that reach nobody: the next step is not left waiting for its time (fake clock,
real receivers)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from server.core.db import Station, TimelineEntry
from tests.server.alerting.test_escalation import Harness
from tests.server.conftest import PageReceiver


def test_a_step_with_nobody_to_page_moves_on_at_once(tmp_path: Path,
                                                     receiver: PageReceiver) -> None:
    """Step 1 names only the area officers and the station has none: the timeline says the step
    reached nobody and the duty desk's step fires at once, not 120 s later."""
    h = Harness(tmp_path, receiver, escalation={"policies": {"default": {"steps": [
        {"after_s": 0, "targets": ["constable"]},
        {"after_s": 60, "targets": ["area_officers"]},
        {"after_s": 180, "targets": ["duty_desk"]}]}}})
    try:
        with h.svc.sessions() as s, s.begin():
            s.get(Station, "quanjiang").area_officers = []
        h.event("person_in_water")
        assert h.tick() == 1 and h.paged() == ["guo-yong"]
        assert h.tick(60) == 1 and h.paged() == ["guo-yong"]  # step 1: nobody to page
        assert h.tick() == 1  # no clock advance: step 2 is due now
        assert h.paged() == ["guo-yong", "duty-quanjiang"]
        with h.svc.sessions() as s:
            notes = [t.detail for t in s.scalars(select(TimelineEntry).where(
                TimelineEntry.kind == "note").order_by(TimelineEntry.id))]
        assert "step 1: area_officers -> nobody" in notes
    finally:
        h.close()
