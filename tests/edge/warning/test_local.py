"""Local warning: GPIO pins over (fake) time, voice repeats with a cap, SOS, PIR, aplay."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from edge.config import NodeConfig
from edge.warning.audio import BUILTIN_VOICE, AplayPlayer, AudioError, NullPlayer
from edge.warning.local import STATUS_PATTERNS, LocalWarning, pattern_on
from protocol import Event
from tests.support import FakeClock, wait_for

PINS = {"horn": 17, "light": 27, "status_led": 22, "sos_button": 5, "pir": 4}


def make_cfg(gpio: dict[str, int] | None = None, **warning: Any) -> NodeConfig:
    """A minimal node config with the given GPIO pins and warning settings."""
    w = {"horn_s": 2.0, "repeat_s": 5.0, "max_repeats": 3, "flash_s": 0.5, **warning}
    return NodeConfig.model_validate({
        "node_id": "heyuan-01", "pond_id": "heyuan-shantang",
        "zones": {"water": [[0, 0.6], [1, 0.6], [1, 1]]},
        "gpio": PINS if gpio is None else gpio, "warning": w})


def critical(**kw: Any) -> Event:
    return Event.make("child_near_water", "heyuan-01", "heyuan-shantang", track_id=3, **kw)


def end(ref: str) -> Event:
    return Event.make("event_end", "heyuan-01", "heyuan-shantang", ref=ref)


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
    yield f
    f.reset()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def player() -> NullPlayer:
    return NullPlayer()


@pytest.fixture
def warn(factory: MockFactory, clock: FakeClock, player: NullPlayer) -> Iterator[LocalWarning]:
    # A long tick: the test drives step() itself, the worker stays out of the way.
    w = LocalWarning(make_cfg(), pin_factory=factory, player=player, clock=clock, tick_s=3600)
    yield w
    w.close()


def pins(factory: MockFactory) -> tuple[bool, bool]:
    return bool(factory.pin(PINS["horn"]).state), bool(factory.pin(PINS["light"]).state)


def at(w: LocalWarning, clock: FakeClock, t: float) -> None:
    """Move the fake clock to t seconds after 1000 and let the warning act."""
    clock.t = 1000.0 + t
    w.step()


def test_critical_event_schedule_with_cap_then_end(
        warn: LocalWarning, factory: MockFactory, clock: FakeClock, player: NullPlayer) -> None:
    at(warn, clock, 0)
    assert pins(factory) == (False, False)
    ev = critical()
    warn.on_event(ev)
    timeline = []
    for tenth in range(0, 200, 1):           # 0 … 19.9 s in 0.1 s steps
        at(warn, clock, tenth / 10)
        timeline.append((tenth / 10, *pins(factory), len(player.played)))
    horn = {t for t, h, _, _ in timeline if h}
    # Horn: 2 s bursts at 0, 5, 10 (cap 3), never after.
    assert horn == {t for t, *_ in timeline if (t % 5) < 2 - 1e-9 and t < 15}
    # Voice after each burst, three times in all.
    played_at = [t for (t, *_, n), (_, *__, prev) in zip(timeline[1:], timeline[:-1], strict=True)
                 if n > prev]
    assert played_at == [2.0, 7.0, 12.0]
    assert player.played == [str(BUILTIN_VOICE)] * 3
    # Light flashes 0.5 s on / 0.5 s off the whole time, also after the cap.
    light = [lt for t, _, lt, _ in timeline]
    assert light[0:10] == [True] * 5 + [False] * 5
    assert light[150:160] == [True] * 5 + [False] * 5
    warn.on_event(end(ev.id))
    at(warn, clock, 20.0)
    assert pins(factory) == (False, False)
    assert not warn.active


def test_end_stops_the_horn_and_voice_at_once(
        warn: LocalWarning, factory: MockFactory, clock: FakeClock) -> None:
    class Busy(NullPlayer):
        stopped = 0

        @property
        def busy(self) -> bool:
            return True

        def stop(self) -> None:
            self.stopped += 1
    busy = Busy()
    warn._player = busy
    ev = critical()
    warn.on_event(ev)
    at(warn, clock, 0.1)
    assert pins(factory) == (True, True)
    warn.on_event(end(ev.id))
    at(warn, clock, 0.2)
    assert pins(factory) == (False, False)
    assert busy.stopped == 1


def test_non_critical_and_unknown_ends_are_ignored(
        warn: LocalWarning, factory: MockFactory, clock: FakeClock) -> None:
    warn.on_event(Event.make("person_near_water", "heyuan-01", "heyuan-shantang", track_id=1))
    warn.on_event(Event.make("equipment_missing", "heyuan-01", "heyuan-shantang", item="lifebuoy"))
    at(warn, clock, 0.1)
    assert pins(factory) == (False, False)
    ev = critical()
    warn.on_event(ev)
    warn.on_event(end("someone-else"))
    warn.on_event(Event.make("event_end", "heyuan-01", "heyuan-shantang"))  # no ref
    at(warn, clock, 0.2)
    assert pins(factory) == (True, True)
    assert warn.active


def test_two_events_light_until_both_end_and_new_event_restarts_count(
        warn: LocalWarning, factory: MockFactory, clock: FakeClock, player: NullPlayer) -> None:
    a = critical()
    warn.on_event(a)
    for t in range(0, 30):
        at(warn, clock, float(t))
    assert len(player.played) == 3          # capped
    b = Event.make("person_in_water", "heyuan-01", "heyuan-shantang", track_id=4)
    warn.on_event(b)
    warn.on_event(b)                        # a duplicate changes nothing
    at(warn, clock, 30.0)
    assert pins(factory)[0] is True         # a new danger sounds again
    for t in range(31, 60):
        at(warn, clock, float(t))
    assert len(player.played) == 6
    warn.on_event(end(a.id))
    at(warn, clock, 60.0)
    assert warn.active and pins(factory)[1] is True
    warn.on_event(end(b.id))
    at(warn, clock, 60.0)
    assert pins(factory) == (False, False)


def test_each_event_keeps_the_light_for_light_max_s(factory: MockFactory,
                                                    clock: FakeClock) -> None:
    w = LocalWarning(make_cfg(light_max_s=60), pin_factory=factory, player=NullPlayer(),
                     clock=clock, tick_s=3600)
    try:
        w.on_event(critical())
        at(w, clock, 50.0)
        w.on_event(critical())                 # a second danger 50 s later
        at(w, clock, 100.0)
        assert w.active and pins(factory)[1] is True
        at(w, clock, 110.0)
        assert not w.active and pins(factory) == (False, False)
    finally:
        w.close()


def test_light_gives_up_after_light_max_s(factory: MockFactory, clock: FakeClock) -> None:
    w = LocalWarning(make_cfg(light_max_s=60), pin_factory=factory, player=NullPlayer(),
                     clock=clock, tick_s=3600)
    try:
        w.on_event(critical())
        for t in range(60):
            at(w, clock, float(t))
        assert pins(factory) == (False, True)    # at 59 s: flash on half
        at(w, clock, 59.6)
        assert pins(factory) == (False, False)   # off half
        at(w, clock, 60.0)
        assert pins(factory) == (False, False)   # given up
        at(w, clock, 60.0)
        assert pins(factory) == (False, False)
        assert not w.active
    finally:
        w.close()


@pytest.mark.parametrize("state", sorted(STATUS_PATTERNS))
def test_status_led_pattern(warn: LocalWarning, factory: MockFactory, clock: FakeClock,
                            state: str) -> None:
    at(warn, clock, 0)
    warn.set_status(state)
    on_s, off_s = STATUS_PATTERNS[state]
    samples = []
    for i in range(40):
        at(warn, clock, i * 0.05)
        samples.append(bool(factory.pin(PINS["status_led"]).state))
    expected = [pattern_on(state, (1000.0 + i * 0.05) - 1000.0) for i in range(40)]
    assert samples == expected
    assert sum(samples) == pytest.approx(40 * on_s / (on_s + off_s), abs=2)


def test_status_patterns_differ_and_unknown_state_is_refused(warn: LocalWarning) -> None:
    shapes = {tuple(pattern_on(s, i * 0.1) for i in range(20)) for s in STATUS_PATTERNS}
    assert len(shapes) == len(STATUS_PATTERNS)
    with pytest.raises(ValueError, match="unknown status"):
        warn.set_status("sleepy")


def test_sos_button_and_pir_call_back(warn: LocalWarning, factory: MockFactory) -> None:
    sos: list[float] = []
    pir: list[float] = []
    warn.on_sos(lambda: sos.append(1.0))
    warn.on_sos(lambda: 1 / 0)            # a broken callback does not stop the others
    warn.on_pir(lambda: pir.append(1.0))
    button = factory.pin(PINS["sos_button"])
    button.drive_low()                    # pressed: the button pulls the pin to ground
    button.drive_high()
    factory.pin(PINS["pir"]).drive_high()
    wait_for(lambda: sos and pir, 15, "the SOS and PIR callbacks")
    assert len(sos) == 1 and len(pir) == 1


def test_the_worker_acts_when_an_event_wakes_it_not_on_its_tick(factory: MockFactory,
                                                                clock: FakeClock) -> None:
    """With an hour-long tick, only the event's wake-up can switch the horn on."""
    w = LocalWarning(make_cfg(), pin_factory=factory, player=NullPlayer(), clock=clock,
                     tick_s=3600)
    try:
        wait_for(lambda: factory.pin(PINS["status_led"]).state, 15, "the worker's first step")
        w.on_event(critical())                # the worker is asleep on its tick now
        wait_for(lambda: factory.pin(PINS["horn"]).state, 15, "the horn, from the worker")
    finally:
        w.close()


class HeldPlayer(NullPlayer):
    """A speaker that plays until released: the worker is stuck in play() meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def play(self, path: str) -> None:
        super().play(path)
        self.release.wait(30)


def test_a_stuck_speaker_never_blocks_the_caller(factory: MockFactory,
                                                 clock: FakeClock) -> None:
    """The worker, ticking on the fake clock, blows the horn for horn_s, then plays the
    voice; while play() hangs, on_event still returns and the next event is taken."""
    player = HeldPlayer()
    w = LocalWarning(make_cfg(horn_s=0.3), pin_factory=factory, player=player, clock=clock,
                     tick_s=0.01)
    horn = factory.pin(PINS["horn"])
    try:
        w.on_event(critical())
        wait_for(lambda: horn.state, 15, "the horn")
        clock.advance(0.3)                    # horn_s on the fake clock: horn off, voice on
        wait_for(lambda: player.played and not horn.state, 15, "the voice after the horn")
        caller = threading.Thread(target=w.on_event, args=(critical(),))
        caller.start()
        caller.join(15)
        assert not caller.is_alive() and not player.release.is_set()
        assert w.active
        player.release.set()
        wait_for(lambda: horn.state, 15, "the second event's horn once the worker is free")
    finally:
        player.release.set()
        w.close()


def test_without_gpio_everything_is_a_no_op(clock: FakeClock) -> None:
    player = NullPlayer()
    w = LocalWarning(make_cfg(gpio={}), player=player, clock=clock, tick_s=3600)
    w.on_event(critical())
    at(w, clock, 0.0)
    at(w, clock, 2.0)
    assert player.played and w.faults == []
    w.set_status("no_broker")
    w.on_sos(lambda: None)
    w.close()
    w.close()


def test_close_twice_switches_off_and_releases(factory: MockFactory, clock: FakeClock) -> None:
    w = LocalWarning(make_cfg(), pin_factory=factory, player=NullPlayer(), clock=clock,
                     tick_s=3600)
    w.on_event(critical())
    at(w, clock, 0.1)
    assert pins(factory) == (True, True)
    w.close()
    w.close()
    assert pins(factory) == (False, False)
    # Pins are free again: a new warning can claim them.
    LocalWarning(make_cfg(), pin_factory=factory, player=NullPlayer(), clock=clock).close()


def test_a_broken_voice_does_not_silence_the_horn(factory: MockFactory, clock: FakeClock,
                                                 tmp_path: Path) -> None:
    w = LocalWarning(make_cfg(horn_s=0, voice=str(tmp_path / "missing.wav")),
                     pin_factory=factory, player=AplayPlayer(device="null"), clock=clock,
                     tick_s=3600)
    try:
        w.on_event(critical())
        at(w, clock, 0.0)
        assert any(f.startswith("voice:") for f in w.faults)
        assert pins(factory)[1] is True
    finally:
        w.close()


def test_horn_test_command(warn: LocalWarning, factory: MockFactory, clock: FakeClock,
                           player: NullPlayer) -> None:
    at(warn, clock, 0)
    warn.test(seconds=1.0)
    at(warn, clock, 0.5)
    assert pins(factory) == (True, True) and len(player.played) == 1
    at(warn, clock, 1.0)
    assert pins(factory) == (False, False)


def test_gpio_pin_in_use_is_reported_not_fatal(factory: MockFactory, clock: FakeClock) -> None:
    from gpiozero import LED
    squatter = LED(PINS["horn"], pin_factory=factory)
    w = LocalWarning(make_cfg(), pin_factory=factory, player=NullPlayer(), clock=clock,
                     tick_s=3600)
    try:
        assert any(f.startswith("horn:") for f in w.faults)
        w.on_event(critical())
        at(w, clock, 0.1)
        assert bool(factory.pin(PINS["light"]).state)
    finally:
        w.close()
        squatter.close()


# ---- aplay ---------------------------------------------------------------------------

def test_builtin_voice_is_a_real_wav() -> None:
    import wave
    with wave.open(str(BUILTIN_VOICE)) as wav:
        seconds = wav.getnframes() / wav.getframerate()
        assert wav.getnchannels() == 1 and 1.5 < seconds < 8


def test_aplay_plays_on_the_null_device() -> None:
    p = AplayPlayer(device="null")
    assert p.available()
    p.play(str(BUILTIN_VOICE))
    assert p.wait(timeout=20) == 0
    assert not p.busy
    p.stop()


def test_aplay_errors() -> None:
    with pytest.raises(AudioError, match="does not exist"):
        AplayPlayer().play("/nonexistent.wav")
    with pytest.raises(AudioError, match="cannot start"):
        AplayPlayer(command="/nonexistent/aplay").play(str(BUILTIN_VOICE))
    p = AplayPlayer(device="no-such-device")
    p.play(str(BUILTIN_VOICE))
    assert p.wait(timeout=20) not in (0, None)
