"""Local warning on the spot: horn relay, flashing light, voice, status LED, SOS button and PIR."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from edge.config import NodeConfig
from edge.warning.audio import BUILTIN_VOICE, AplayPlayer, AudioError, AudioPlayer
from protocol import Event, Severity

log = logging.getLogger(__name__)

# (on seconds, off seconds) of the status LED for each node state.
STATUS_PATTERNS: dict[str, tuple[float, float]] = {
    "ok": (0.2, 1.8),            # a short blink every 2 s: alive and well
    "no_broker": (1.0, 1.0),     # slow even blink: no link to the server
    "camera_fault": (0.2, 0.2),  # fast blink: the camera gives no usable frames
}
MAX_OPEN_EVENTS = 64


class Output(Protocol):
    """A switched output: relay, lamp or LED."""

    value: Any

    def close(self) -> None:
        """Release the pin."""


class _NullOutput:
    """An output that is not fitted: remembers its value, drives nothing."""

    def __init__(self) -> None:
        """Start switched off."""
        self.value: Any = 0

    def close(self) -> None:
        """Nothing to release."""


def pattern_on(state: str, elapsed: float) -> bool:
    """Whether the status LED is lit elapsed seconds into the blink pattern of state."""
    on_s, off_s = STATUS_PATTERNS[state]
    return (elapsed % (on_s + off_s)) < on_s


@dataclass
class _Alarm:
    """The announcement schedule of the current danger."""

    started: float
    announced: int = 0
    next_at: float = 0.0
    last_at: float | None = None
    voice_due: float | None = None


class LocalWarning:
    """Drives the warning hardware from events; acts on its own thread, never blocks callers."""

    def __init__(self, cfg: NodeConfig, pin_factory: Any = None,
                 player: AudioPlayer | None = None,
                 clock: Callable[[], float] = time.monotonic, *, tick_s: float = 0.05) -> None:
        """Build the gpiozero devices of cfg.gpio on pin_factory and start the worker thread."""
        self._w = cfg.warning
        self._clock = clock
        self._tick_s = tick_s
        self._voice = self._w.voice or str(BUILTIN_VOICE)
        self._player: AudioPlayer = player or AplayPlayer(self._w.audio_device)
        self.faults: list[str] = []
        gpio = cfg.gpio
        self._horn = self._output("horn", gpio.horn, pin_factory)
        self._light = self._output("light", gpio.light, pin_factory)
        self._status = self._output("status_led", gpio.status_led, pin_factory)
        self._sos_callbacks: list[Callable[[], None]] = []
        self._pir_callbacks: list[Callable[[], None]] = []
        self._inputs: list[Any] = []
        if gpio.sos_button is not None:
            self._make_input("sos_button", gpio.sos_button, pin_factory)
        if gpio.pir is not None:
            self._make_input("pir", gpio.pir, pin_factory)
        self._lock = threading.Lock()
        self._step_lock = threading.Lock()
        self._open: dict[str, float] = {}
        self._alarm: _Alarm | None = None
        self._light_from = 0.0
        self._test_until: float | None = None
        self._hush = False
        self._state = "ok"
        self._state_since = clock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="local-warning", daemon=True)
        self._thread.start()

    def _output(self, name: str, pin: int | None, pin_factory: Any) -> Output:
        """A gpiozero output on pin, or a stand-in when the pin is not fitted or unusable."""
        if pin is None:
            return _NullOutput()
        from gpiozero import DigitalOutputDevice, GPIOZeroError
        try:
            device: Output = DigitalOutputDevice(pin, initial_value=False,
                                                 pin_factory=pin_factory)
            return device
        except (GPIOZeroError, OSError) as exc:
            log.error("GPIO %s on pin %s unusable: %s", name, pin, exc)
            self.faults.append(f"{name}: {exc}")
            return _NullOutput()

    def _make_input(self, name: str, pin: int, pin_factory: Any) -> None:
        """Build the SOS button (to ground, pulled up) or the PIR sensor on pin."""
        from gpiozero import Button, GPIOZeroError, MotionSensor
        try:
            if name == "sos_button":
                dev: Any = Button(pin, pull_up=True, bounce_time=0.05, pin_factory=pin_factory)
                dev.when_pressed = self._sos_pressed
            else:
                dev = MotionSensor(pin, pin_factory=pin_factory)
                dev.when_motion = self._pir_motion
                # Its first sample sets the idle state; motion before that raises no edge.
                dev.wait_for_inactive(timeout=0.5)
        except (GPIOZeroError, OSError) as exc:
            log.error("GPIO %s on pin %s unusable: %s", name, pin, exc)
            self.faults.append(f"{name}: {exc}")
            return
        self._inputs.append(dev)

    # ---- what callers do -------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Start warning on a critical event; stop when a clearing event ends it (by ref)."""
        now = self._clock()
        with self._lock:
            if event.severity == Severity.CRITICAL:
                if event.id in self._open:
                    return
                if len(self._open) >= MAX_OPEN_EVENTS:
                    self._open.pop(min(self._open, key=self._open.__getitem__))
                if not self._open:
                    self._light_from = now
                self._open[event.id] = now
                # A new danger restarts the announcements, capped per event.
                self._alarm = _Alarm(started=now, next_at=now)
                log.info("local warning on: %s %s", event.type, event.id)
            elif event.severity == Severity.CLEAR and event.ref:
                if self._open.pop(event.ref, None) is None:
                    return
                log.info("local warning: %s ended by %s", event.ref, event.type)
                if not self._open:
                    self._alarm = None
                    self._hush = True
            else:
                return
        self._wake.set()

    def set_status(self, state: str) -> None:
        """Show ok, no_broker or camera_fault on the status LED."""
        if state not in STATUS_PATTERNS:
            raise ValueError(f"unknown status {state!r}; one of {sorted(STATUS_PATTERNS)}")
        with self._lock:
            if state != self._state:
                self._state, self._state_since = state, self._clock()
        self._wake.set()

    def test(self, seconds: float = 2.0) -> None:
        """Sound the horn, flash the light and play the voice once (the horn_test command)."""
        with self._lock:
            self._test_until = self._clock() + seconds
        self._play()
        self._wake.set()

    def on_sos(self, callback: Callable[[], None]) -> None:
        """Call callback (on a gpiozero thread: only hand off) when the SOS button is pressed."""
        self._sos_callbacks.append(callback)

    def on_pir(self, callback: Callable[[], None]) -> None:
        """Call callback (on a gpiozero thread: only hand off) when the PIR sees motion."""
        self._pir_callbacks.append(callback)

    @property
    def active(self) -> bool:
        """True while a critical event is open."""
        with self._lock:
            return bool(self._open)

    # ---- the worker ------------------------------------------------------------------

    def step(self) -> None:
        """Set every output for the clock's current time; the worker calls this each tick."""
        with self._step_lock:
            now = self._clock()
            play = False
            with self._lock:
                self._expire(now)
                alarm = self._alarm
                if alarm and alarm.announced < self._w.max_repeats and now >= alarm.next_at:
                    alarm.announced += 1
                    alarm.last_at = now
                    alarm.next_at = now + self._w.repeat_s
                    alarm.voice_due = now + self._w.horn_s
                if alarm and alarm.voice_due is not None and now >= alarm.voice_due:
                    alarm.voice_due, play = None, True
                horn = bool(alarm and alarm.last_at is not None
                            and now < alarm.last_at + self._w.horn_s)
                # Events older than light_max_s are gone already (_expire): flash while any is open.
                light = bool(self._open) and (
                    int((now - self._light_from) / self._w.flash_s) % 2 == 0)
                if self._test_until is not None:
                    if now < self._test_until:
                        horn = light = True
                    else:
                        self._test_until = None
                status = pattern_on(self._state, now - self._state_since)
                hush, self._hush = self._hush, False
            self._set(self._horn, horn)
            self._set(self._light, light)
            self._set(self._status, status)
            if play:
                self._play()
            elif hush and self._player.busy:
                self._player.stop()

    def _expire(self, now: float) -> None:
        """Forget events older than light_max_s; their announcements are long capped."""
        for event_id, opened in list(self._open.items()):
            if now - opened >= self._w.light_max_s:
                del self._open[event_id]
        if not self._open:
            self._alarm = None

    @staticmethod
    def _set(device: Output, on: bool) -> None:
        """Switch device only when its value changes."""
        if bool(device.value) != on:
            device.value = 1 if on else 0

    def _play(self) -> None:
        """Play the voice warning; a broken speaker must not stop horn and light."""
        try:
            self._player.play(self._voice)
        except AudioError as exc:
            if "voice" not in " ".join(self.faults):
                self.faults.append(f"voice: {exc}")
            log.error("voice warning failed: %s", exc)

    def _run(self) -> None:
        """Step the outputs every tick, or at once when woken."""
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception("local warning step failed")
            self._wake.wait(self._tick_s)
            self._wake.clear()

    def _sos_pressed(self) -> None:
        """Hand the SOS press to the registered callbacks."""
        log.warning("SOS button pressed")
        for cb in list(self._sos_callbacks):
            try:
                cb()
            except Exception:
                log.exception("SOS callback failed")

    def _pir_motion(self) -> None:
        """Hand PIR motion to the registered callbacks."""
        log.debug("PIR motion")
        for cb in list(self._pir_callbacks):
            try:
                cb()
            except Exception:
                log.exception("PIR callback failed")

    def close(self) -> None:
        """Stop the worker, switch everything off and release the pins; safe twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        for dev in (self._horn, self._light, self._status):
            try:
                self._set(dev, False)
                dev.close()
            except Exception:
                log.exception("closing an output failed")
        for dev in self._inputs:
            dev.close()
        self._player.stop()

    def __enter__(self) -> LocalWarning:
        """Use as a context manager."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close on leaving the block."""
        self.close()
