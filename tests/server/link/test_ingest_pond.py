"""A node's pond is the registry's: an event naming another pond (a copied node.yaml, a node
moved without its config) is stored, alerted and paged for the pond the registry gives its node,
with a warning (fake clock, real ingest code path, real receivers)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from server.core.db import Alert, EventRow
from tests.server.alerting.test_escalation import Harness
from tests.server.conftest import PageReceiver


@pytest.fixture
def h(tmp_path: Path, receiver: PageReceiver) -> Iterator[Harness]:
    harness = Harness(tmp_path, receiver)
    yield harness
    harness.close()


@pytest.mark.parametrize("named", ["xiatang", "no-such-pond"])
def test_event_naming_another_pond_is_routed_by_the_registry(
        h: Harness, named: str, caplog: pytest.LogCaptureFixture) -> None:
    """heyuan-01 watches 禾源山塘 (共裕, 郭勇) in the registry; its event says 下塘 (东山, 康东海),
    where an incident is already open, or a pond nobody knows: it joins no incident of the named
    pond, opens 禾源山塘's alert and pages 郭勇 only."""
    caplog.set_level(logging.WARNING, logger="server.link.ingest")
    h.event("child_near_water", node="xiatang-01", pond="xiatang")  # 下塘's own incident
    h.tick()
    assert h.paged() == ["kang-donghai"]
    ev = h.event("person_in_water", node="heyuan-01", pond=named)
    with h.svc.sessions() as s:
        row = s.get(EventRow, ev.id)
        assert row is not None and row.pond_id == "heyuan-shantang"
        alert = s.get(Alert, row.alert_id)
        assert (alert.pond_id, alert.kind, alert.event_count) == (
            "heyuan-shantang", "person_in_water", 1)
        xiatang = s.scalars(select(Alert).where(Alert.pond_id == "xiatang")).one()
        assert (xiatang.kind, xiatang.event_count) == ("child_near_water", 1)
    h.tick()
    assert h.paged() == ["kang-donghai", "guo-yong"]
    assert h.receiver.pages[-1]["title"] == "【紧急】禾源山塘：有人在水中"
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("heyuan-01" in m and named in m and "heyuan-shantang" in m for m in warned)
