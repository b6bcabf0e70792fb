"""SMS fallback against a simulated AT modem on a pseudo-terminal, with the real outbox."""

from __future__ import annotations

import json
import os
import select
import threading
import tty
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge.config import NodeConfig
from edge.link.outbox import Outbox
from edge.link.sms import ModemError, SerialModem, SmsFallback, sms_text, ucs2
from protocol import Event
from tests.support import FakeClock, wait_for

T0 = datetime(2026, 7, 1, 6, 30, tzinfo=UTC).timestamp()    # 14:30 in China
NUMBERS = ["+8613800000001", "13900000002"]


class SimModem:
    """A modem on the master side of a pty: answers AT commands, records messages."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode              # ok | error | cms_error | silent
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.slave = slave
        self.port = os.ttyname(slave)
        self.commands: list[str] = []
        self.sent: list[tuple[str, str]] = []
        self.charset = "IRA"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _reply(self, text: str) -> None:
        os.write(self.master, text.encode())

    def _run(self) -> None:
        buf = b""
        pending: str | None = None
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                buf += os.read(self.master, 1024)
            except OSError:
                return
            while True:
                if pending is not None:
                    if b"\x1a" not in buf:
                        break
                    body, buf = buf.split(b"\x1a", 1)
                    self._message(pending, body.decode())
                    pending = None
                    continue
                if b"\r" not in buf:
                    break
                raw, buf = buf.split(b"\r", 1)
                line = raw.decode().strip()
                if not line:
                    continue
                self.commands.append(line)
                if self.mode == "silent":
                    continue
                if line.startswith("AT+CMGS="):
                    pending = line[len('AT+CMGS="'):-1]
                    self._reply("\r\n> ")
                elif line.startswith('AT+CSCS="'):
                    self.charset = line[len('AT+CSCS="'):-1]
                    self._reply("\r\nOK\r\n")
                elif line.startswith("AT"):
                    self._reply("\r\nOK\r\n")
                else:
                    self._reply("\r\nERROR\r\n")

    def _message(self, dest: str, body: str) -> None:
        if self.mode == "error":
            self._reply("\r\nERROR\r\n")
            return
        if self.mode == "cms_error":
            self._reply("\r\n+CMS ERROR: 500\r\n")
            return
        if self.charset == "UCS2":
            dest = bytes.fromhex(dest).decode("utf-16-be")
            body = bytes.fromhex(body).decode("utf-16-be")
        self.sent.append((dest, body))
        self._reply(f"\r\n+CMGS: {len(self.sent)}\r\n\r\nOK\r\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def modem() -> Iterator[SimModem]:
    m = SimModem()
    yield m
    m.close()


def make_cfg(port: str, **sms: Any) -> NodeConfig:
    return NodeConfig.model_validate({
        "node_id": "heyuan-01", "pond_id": "heyuan-shantang",
        "zones": {"water": [[0, 0.6], [1, 0.6], [1, 1]]},
        "sms": {"enabled": True, "port": port, "numbers": NUMBERS, "timeout_s": 2, **sms}})


def raise_event(box: Outbox, kind: str = "child_near_water", at: float = T0) -> Event:
    ev = Event.make(kind, "heyuan-01", "heyuan-shantang",
                    ts=datetime.fromtimestamp(at, UTC), track_id=7, zone="bank")
    box.put(ev, now=at)
    return ev


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Outbox]:
    b = Outbox(tmp_path / "outbox.db")
    yield b
    b.close()


def test_texts_once_after_60_s_in_chinese(modem: SimModem, box: Outbox) -> None:
    clock = FakeClock(T0)
    fb = SmsFallback(make_cfg(modem.port), box, clock=clock)
    ev = raise_event(box)
    raise_event(box, "person_near_water")               # info: never texted
    clock.t = T0 + 59
    assert fb.tick() == 0 and modem.sent == []
    clock.t = T0 + 60
    assert fb.tick() == 1
    assert [d for d, _ in modem.sent] == NUMBERS
    text = modem.sent[0][1]
    assert text == "【溺水预警】儿童靠近水边 07-01 14:30 塘:heyuan-shantang 网络中断,请速到场"
    assert len(text) <= 70
    assert 'AT+CMGF=1' in modem.commands and 'AT+CSCS="UCS2"' in modem.commands
    clock.t = T0 + 120
    assert fb.tick() == 0 and len(modem.sent) == 2       # once per event
    (item,) = box.undelivered(0, now=clock.t)
    assert item.id == ev.id and item.texted and item.event["texted"] is True
    stored = json.loads(json.dumps(item.event))
    assert Event.model_validate(stored).texted is True   # the MQTT copy says so


def test_gsm_encoding(modem: SimModem, box: Outbox) -> None:
    clock = FakeClock(T0)
    fb = SmsFallback(make_cfg(modem.port, encoding="gsm", numbers=["13900000002"]), box,
                     clock=clock)
    raise_event(box, "sos")
    clock.t = T0 + 61
    assert fb.tick() == 1
    (dest, body), = modem.sent
    assert dest == "13900000002" and 'AT+CSCS="GSM"' in modem.commands
    assert body.startswith("PondWatch ALERT: SOS BUTTON at pond heyuan-shantang") and \
        "14:30" in body and len(body) <= 160


@pytest.mark.parametrize("mode", ["error", "cms_error"])
def test_modem_error_is_recorded_retried_and_not_marked(box: Outbox, mode: str) -> None:
    bad = SimModem(mode)
    try:
        clock = FakeClock(T0)
        fb = SmsFallback(make_cfg(bad.port, retry_s=30), box, clock=clock)
        raise_event(box)
        clock.t = T0 + 60
        assert fb.tick() == 0
        assert fb.failures == 1 and "modem answered" in (fb.last_error or "")
        assert not box.undelivered(0, now=clock.t)[0].texted
        clock.t = T0 + 70
        assert fb.tick() == 0 and fb.failures == 1          # waits retry_s before trying again
        bad.mode = "ok"                                     # the network came back
        clock.t = T0 + 91
        assert fb.tick() == 1
        assert [d for d, _ in bad.sent] == NUMBERS
        assert box.undelivered(0, now=clock.t)[0].texted
    finally:
        bad.close()


def test_partial_failure_does_not_text_the_first_number_twice(box: Outbox) -> None:
    class Flaky:
        def __init__(self) -> None:
            self.sent: list[str] = []
            self.fail_next = {"13900000002"}

        def send_sms(self, number: str, text: str) -> str:
            if number in self.fail_next:
                self.fail_next.discard(number)
                raise ModemError("modem answered +CMS ERROR: 38")
            self.sent.append(number)
            return str(len(self.sent))
    flaky = Flaky()
    clock = FakeClock(T0)
    fb = SmsFallback(make_cfg("/dev/null", retry_s=5), box, modem=flaky, clock=clock)
    raise_event(box)
    clock.t = T0 + 60
    assert fb.tick() == 0
    clock.t = T0 + 66
    assert fb.tick() == 1
    assert flaky.sent == NUMBERS


def test_silent_modem_and_missing_port(box: Outbox, tmp_path: Path) -> None:
    silent = SimModem("silent")
    try:
        with pytest.raises(ModemError, match="no answer"):
            SerialModem(silent.port, timeout_s=0.3).send_sms("10086", "test")
    finally:
        silent.close()
    with pytest.raises(ModemError, match="cannot open"):
        SerialModem(str(tmp_path / "ttyUSB9")).send_sms("10086", "test")
    clock = FakeClock(T0)
    fb = SmsFallback(make_cfg(str(tmp_path / "ttyUSB9")), box, clock=clock)
    raise_event(box)
    clock.t = T0 + 60
    assert fb.tick() == 0 and "cannot open" in (fb.last_error or "")


def test_disabled_does_nothing(box: Outbox) -> None:
    cfg = NodeConfig.model_validate({"node_id": "heyuan-01", "pond_id": "p",
                                     "zones": {"water": [[0, 0.6], [1, 0.6], [1, 1]]}})
    raise_event(box)

    class Never:
        def send_sms(self, number: str, text: str) -> str:
            raise AssertionError("must not text")
    assert SmsFallback(cfg, box, modem=Never(), clock=lambda: T0 + 999).tick() == 0


def test_config_rejects_bad_numbers() -> None:
    with pytest.raises(ValueError, match="numbers"):
        make_cfg("/dev/ttyUSB2", numbers=["call-me"])
    with pytest.raises(ValueError, match="at least one number"):
        make_cfg("/dev/ttyUSB2", numbers=[])


def test_text_helpers() -> None:
    assert ucs2("危") == "5371"
    long = {"type": "person_submerged", "pond_id": "x" * 64, "ts": "2026-07-01T06:30:00Z"}
    assert len(sms_text(long, "ucs2")) <= 70
    assert "?" in sms_text({"type": "sos", "ts": "yesterday"}, "ucs2")


def test_run_ticks_on_its_own_thread_until_stopped(modem: SimModem, box: Outbox) -> None:
    clock = FakeClock(T0)
    fb = SmsFallback(make_cfg(modem.port), box, clock=clock)
    raise_event(box)
    clock.t = T0 + 60
    stop = threading.Event()
    worker = threading.Thread(target=fb.run, args=(stop, 0.01))
    worker.start()
    try:
        wait_for(lambda: fb.texted_events, 15, "the worker to text the event")
    finally:
        stop.set()
        worker.join(timeout=5)
    assert fb.texted_events == 1 and not worker.is_alive()


def test_restart_mid_event_texts_nobody_twice(box: Outbox, tmp_path: Path) -> None:
    """The first number was reached, then the node restarted: only the rest get the text."""
    class Recorder:
        def __init__(self, fail: set[str]) -> None:
            self.sent: list[str] = []
            self.fail = fail

        def send_sms(self, number: str, text: str) -> str:
            if number in self.fail:
                raise ModemError("modem answered ERROR")
            self.sent.append(number)
            return str(len(self.sent))
    clock = FakeClock(T0)
    ev = raise_event(box)
    clock.t = T0 + 61
    first = Recorder(fail=set(NUMBERS[1:]))
    assert SmsFallback(make_cfg("/dev/null"), box, modem=first, clock=clock).tick() == 0
    assert first.sent == NUMBERS[:1]
    box.close()
    reopened = Outbox(tmp_path / "outbox.db")  # the node restarted
    assert reopened.reached(ev.id) == set(NUMBERS[:1])
    second = Recorder(fail=set())
    assert SmsFallback(make_cfg("/dev/null"), reopened, modem=second, clock=clock).tick() == 1
    assert second.sent == NUMBERS[1:], "the first number is not texted again"
    reopened.close()


def test_outbox_from_an_older_version_gains_the_column(tmp_path: Path) -> None:
    import sqlite3
    db = sqlite3.connect(tmp_path / "old.db")
    db.execute("CREATE TABLE outbox (id TEXT PRIMARY KEY, payload TEXT NOT NULL, snapshot BLOB,"
               " severity TEXT NOT NULL, rank INTEGER NOT NULL, created REAL NOT NULL,"
               " attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0,"
               " last_sent REAL, texted INTEGER NOT NULL DEFAULT 0)")
    db.commit()
    db.close()
    box = Outbox(tmp_path / "old.db")
    ev = raise_event(box)
    box.mark_reached(ev.id, NUMBERS[0])
    assert box.reached(ev.id) == {NUMBERS[0]}
    box.close()
