"""Last resort when the data link is down: text undelivered critical events through a 4G modem."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from edge.config import NodeConfig
from edge.errors import EdgeError

log = logging.getLogger(__name__)

BEIJING = timezone(timedelta(hours=8), "UTC+8")  # the edge's one Beijing time: texts show it
CTRL_Z = b"\x1a"
UCS2_MAX = 70          # characters in one UCS2 text message
GSM_MAX = 160
TYPE_ZH = {"person_submerged": "有人落水未浮起", "child_near_water": "儿童靠近水边",
           "person_in_water": "有人在水中", "sos": "有人按下求救按钮"}
TYPE_EN = {"person_submerged": "PERSON SUBMERGED", "child_near_water": "CHILD NEAR WATER",
           "person_in_water": "PERSON IN WATER", "sos": "SOS BUTTON"}


class ModemError(EdgeError, RuntimeError):
    """The modem answered ERROR, did not answer, or cannot be opened."""


class Modem(Protocol):
    """Sends one text message."""

    def send_sms(self, number: str, text: str) -> str:
        """Send text to number; the modem's message reference. Raise ModemError on failure."""


class OutboxLike(Protocol):
    """What the SMS fallback needs from edge.link.outbox.Outbox."""

    def undelivered(self, min_age_s: float, now: float) -> list[Any]:
        """Critical events held at least min_age_s (items with id, event, severity, texted)."""

    def mark_texted(self, event_id: str) -> None:
        """Record that the event was texted."""

    def reached(self, event_id: str) -> set[str]:
        """Numbers already texted about this event."""

    def mark_reached(self, event_id: str, number: str) -> None:
        """Record durably that number got the text about this event."""


def sms_text(event: dict[str, Any], encoding: str) -> str:
    """The message: what, where and when (Beijing time), short enough for one SMS."""
    try:
        ts = datetime.fromisoformat(str(event.get("ts")).replace("Z", "+00:00")).astimezone(BEIJING)
        when = f"{ts:%m-%d %H:%M}"
    except ValueError:
        when = "?"
    kind = str(event.get("type", "?"))
    pond = str(event.get("pond_id", "?"))
    node = str(event.get("node_id", "?"))
    if encoding == "gsm":
        text = f"PondWatch ALERT: {TYPE_EN.get(kind, kind)} at pond {pond} ({node}) {when} " \
               "UTC+8. Data link down; go now."
        return text.encode("ascii", "replace").decode()[:GSM_MAX]
    head = f"【溺水预警】{TYPE_ZH.get(kind, kind)} {when} 塘:"
    tail = " 网络中断,请速到场"
    room = UCS2_MAX - len(head) - len(tail)
    return head + pond[:max(room, 8)] + tail


class SerialModem:
    """A modem's AT command port (pyserial); opened for each message, closed after."""

    def __init__(self, port: str, baud: int = 115200, encoding: str = "ucs2",
                 timeout_s: float = 10.0, send_timeout_s: float = 60.0) -> None:
        """Remember the port settings; nothing is opened yet."""
        self.port = port
        self.baud = baud
        self.encoding = encoding
        self.timeout_s = timeout_s
        self.send_timeout_s = send_timeout_s
        self._ser: Any = None

    def _open(self) -> None:
        """Open the serial port."""
        import serial
        try:
            self._ser = serial.Serial(self.port, self.baud, timeout=0.1,
                                      write_timeout=self.timeout_s)
        except (serial.SerialException, OSError) as exc:
            raise ModemError(f"cannot open modem port {self.port}: {exc}") from exc

    def close(self) -> None:
        """Close the port; safe twice."""
        ser, self._ser = self._ser, None
        if ser is not None:
            ser.close()

    def _write(self, data: bytes) -> None:
        """Write to the port, turning serial errors into ModemError."""
        import serial
        try:
            self._ser.write(data)
            self._ser.flush()
        except (serial.SerialException, OSError) as exc:
            raise ModemError(f"modem write failed: {exc}") from exc

    def _answer(self, timeout_s: float, prompt: bool = False) -> list[str]:
        """Lines up to OK (or the "> " prompt); ModemError on ERROR or silence."""
        buf = b""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            chunk = self._ser.read(max(1, self._ser.in_waiting))
            if not chunk:
                continue
            buf += chunk
            lines = [ln.strip() for ln in buf.decode(errors="replace").splitlines()]
            lines = [ln for ln in lines if ln]
            if prompt and buf.rstrip(b" ").endswith(b">"):
                return lines
            for ln in lines:
                if ln == "ERROR" or ln.startswith(("+CMS ERROR", "+CME ERROR")):
                    raise ModemError(f"modem answered {ln}")
            if lines and lines[-1] == "OK" and buf.endswith(b"\n"):
                return lines
        raise ModemError(f"no answer from the modem on {self.port} in {timeout_s:.0f} s")

    def command(self, line: str, timeout_s: float | None = None) -> list[str]:
        """Send one AT command; its answer lines without echo and OK."""
        self._write(line.encode() + b"\r")
        lines = self._answer(timeout_s or self.timeout_s)
        return [ln for ln in lines if ln not in ("OK", line)]

    def send_sms(self, number: str, text: str) -> str:
        """Text mode (AT+CMGF=1), UCS2 or GSM character set, AT+CMGS; the message reference."""
        self._open()
        try:
            self.command("ATE0")
            self.command("AT+CMGF=1")
            if self.encoding == "ucs2":
                self.command('AT+CSCS="UCS2"')
                self.command("AT+CSMP=17,167,0,8")
                dest, body = ucs2(number), ucs2(text)
            else:
                self.command('AT+CSCS="GSM"')
                self.command("AT+CSMP=17,167,0,0")
                dest, body = number, text.encode("ascii", "replace").decode()
            self._write(f'AT+CMGS="{dest}"\r'.encode())
            self._answer(self.timeout_s, prompt=True)
            self._write(body.encode() + CTRL_Z)
            lines = self._answer(self.send_timeout_s)
        finally:
            self.close()
        ref = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("+CMGS:")), "")
        return ref


def ucs2(text: str) -> str:
    """Text as the hex of its UTF-16BE code units (AT+CSCS="UCS2")."""
    return text.encode("utf-16-be").hex().upper()


class SmsFallback:
    """Texts each critical event undelivered for cfg.sms.after_s, once, and marks it texted."""

    def __init__(self, cfg: NodeConfig, outbox: OutboxLike, modem: Modem | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """modem None: a SerialModem on cfg.sms.port."""
        self._sms = cfg.sms
        self._outbox = outbox
        self._modem: Modem = modem or SerialModem(cfg.sms.port, cfg.sms.baud, cfg.sms.encoding,
                                                  cfg.sms.timeout_s)
        self._clock = clock
        self._retry_at = 0.0
        self.failures = 0
        self.last_error: str | None = None
        self.texted_events = 0

    def tick(self) -> int:
        """Text what is due; the number of events texted to every number in this call."""
        if not self._sms.enabled:
            return 0
        now = self._clock()
        if now < self._retry_at:
            return 0
        done = 0
        for item in self._outbox.undelivered(min_age_s=self._sms.after_s, now=now):
            if item.texted or str(item.severity) != "critical":
                continue
            if not self._text_event(item.id, item.event, now):
                break
            self._outbox.mark_texted(item.id)
            self.texted_events += 1
            done += 1
            log.warning("texted event %s (%s) to %d numbers: data link down for %.0f s",
                        item.id, item.event.get("type"), len(self._sms.numbers),
                        now - item.created)
        return done

    def run(self, stop: threading.Event, every_s: float = 5.0) -> None:
        """Tick until stop is set; run it on its own thread (a modem may take a minute)."""
        while not stop.wait(every_s):
            try:
                self.tick()
            except Exception:
                log.exception("SMS fallback tick failed")

    def _text_event(self, event_id: str, event: dict[str, Any], now: float) -> bool:
        """Text one event to each number not yet reached; False (retry later) on a failure.

        Reached numbers are stored in the outbox, so a restart mid-event texts nobody twice.
        """
        reached = self._outbox.reached(event_id)
        text = sms_text(event, self._sms.encoding)
        for number in self._sms.numbers:
            if number in reached:
                continue
            try:
                ref = self._modem.send_sms(number, text)
            except ModemError as exc:
                self.failures += 1
                self.last_error = str(exc)
                self._retry_at = now + self._sms.retry_s
                log.error("SMS for event %s to %s failed: %s; retry in %.0f s", event_id,
                          number, exc, self._sms.retry_s)
                return False
            self._outbox.mark_reached(event_id, number)
            log.info("SMS for event %s sent to %s (ref %s)", event_id, number, ref)
        return True
