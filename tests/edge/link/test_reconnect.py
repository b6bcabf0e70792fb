"""The node link's reconnect cadence on the fake clock: backoff doubling to its cap, every
CRITICAL_RECONNECT_S while a critical event waits, a long wait cut short by a new one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.config import NodeConfig
from edge.link.client import RECONNECT_MAX_S
from edge.link.mqtt import CRITICAL_RECONNECT_S, NodeLink
from edge.link.outbox import Outbox
from protocol import Event
from tests.support import FakeClock

NODE, POND = "heyuan-01", "heyuan-shantang"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def box(tmp_path: Path) -> Outbox:
    return Outbox(str(tmp_path / "outbox.db"))


LinkMaker = Callable[..., NodeLink]


@pytest.fixture
def make_link(tmp_path: Path, box: Outbox, clock: FakeClock) -> Iterator[LinkMaker]:
    """Links that never connect: their reconnect waits move the fake clock, not sleep."""
    cfg = NodeConfig.model_validate({
        "node_id": NODE, "pond_id": POND, "zones": {"water": [[0, 0.6], [1, 0.6], [1, 1]]},
        "mqtt": {"url": "mqtt://127.0.0.1:9"}, "outbox": str(tmp_path / "outbox.db")})
    made: list[NodeLink] = []

    def make(sleep: Callable[[float], object] = clock.advance) -> NodeLink:
        made.append(NodeLink(cfg, box, clock=clock, timer=clock, sleep=sleep))
        return made[-1]
    yield make
    for lk in made:
        lk.stop()


def critical() -> Event:
    return Event.make("person_submerged", NODE, POND, track_id=1)


def wait_once(link: NodeLink, ending: Callable[[], bool] = lambda: False) -> None:
    """One reconnect wait, as paho's network thread runs it between attempts."""
    assert link.client.wait_hook is not None
    link.client.wait_hook(ending)


def waits(link: NodeLink, clock: FakeClock, n: int) -> list[float]:
    """Fake seconds each of n reconnect waits in a row lasted."""
    out = []
    for _ in range(n):
        began = clock.t
        wait_once(link)
        out.append(round(clock.t - began, 6))
    return out


def test_backoff_doubles_to_its_cap_while_nothing_critical_waits(
        make_link: LinkMaker, clock: FakeClock) -> None:
    assert waits(make_link(), clock, 7) == [1.0, 2.0, 4.0, 8.0, 16.0, RECONNECT_MAX_S,
                                            RECONNECT_MAX_S]


def test_a_waiting_critical_event_keeps_every_wait_at_critical_reconnect_s(
        make_link: LinkMaker, box: Outbox, clock: FakeClock) -> None:
    link = make_link()
    waits(link, clock, 6)                      # the backoff has grown to its cap
    box.put(critical())
    assert waits(link, clock, 4) == [CRITICAL_RECONNECT_S] * 4
    assert CRITICAL_RECONNECT_S <= 2.0         # the promise: a retry at least every 2 s


@pytest.mark.parametrize("raised_after", [0.0, 0.4, 5.0, 17.0])
def test_a_critical_event_cuts_a_long_wait_short(
        make_link: LinkMaker, box: Outbox, clock: FakeClock, raised_after: float) -> None:
    """Raised during a RECONNECT_MAX_S wait: the retry comes when the event does, but never
    sooner than CRITICAL_RECONNECT_S into the wait (no busy loop)."""
    began: list[float] = []

    def pause(seconds: float) -> None:
        clock.advance(seconds)
        if began and clock.t - began[0] >= raised_after and not box.has_critical():
            box.put(critical())
    link = make_link(pause)
    waits(link, clock, 5)                      # the next wait would be RECONNECT_MAX_S
    began.append(clock.t)
    wait_once(link)                            # each raised_after is a slice boundary
    assert clock.t - began[0] == pytest.approx(max(CRITICAL_RECONNECT_S, raised_after), abs=1e-6)


def test_the_wait_ends_when_paho_or_the_link_stops(make_link: LinkMaker,
                                                   clock: FakeClock) -> None:
    link = make_link()
    began = clock.t
    wait_once(link, lambda: True)
    assert clock.t == began
    link.stop()
    wait_once(link)
    assert clock.t == began
