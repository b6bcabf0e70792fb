"""The node's heartbeat: uptime, CPU, temperature and throttling, memory, disk, config and model."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import edge
from edge.config import NodeConfig, config_hash
from protocol import Health
from protocol.payloads import utc_now

log = logging.getLogger(__name__)

# get_throttled bits that mean "limited right now" (under-voltage, freq capped, throttled, soft
# temperature limit); the bits 16-19 only say it happened since boot.
THROTTLED_NOW_MASK = 0xF
_STATS_KEYS = ("fps", "inference_ms", "camera", "outbox_depth", "equipment")


def parse_vcgencmd_temp(text: str) -> float | None:
    """Degrees from `vcgencmd measure_temp` output like "temp=48.3'C"."""
    try:
        return float(text.strip().split("=", 1)[1].split("'", 1)[0])
    except (IndexError, ValueError):
        return None


def parse_throttled(text: str) -> int | None:
    """Flags from `vcgencmd get_throttled` ("throttled=0x50005") or the sysfs hex value."""
    value = text.strip().split("=", 1)[-1]
    try:
        return int(value, 16)
    except ValueError:
        return None


class HealthCollector:
    """Builds a protocol.Health heartbeat from the service's stats and the machine's state."""

    def __init__(self, cfg: NodeConfig, config_path: str, model_name: str, *,
                 sys_root: str = "/", vcgencmd: str | None = "vcgencmd",
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Remember what to report; sys_root and vcgencmd are seams for tests."""
        self._cfg = cfg
        self._config_path = config_path
        self._model_name = model_name
        self._model_format: str | None = None
        self._model_sha256: str | None = None
        self._root = Path(sys_root)
        self._vcgencmd = shutil.which(vcgencmd) if vcgencmd else None
        self._clock = clock
        self._started = clock()
        self._cpu_last: tuple[int, int] | None = None
        self._cpu_pct: float | None = None

    def set_model(self, name: str, fmt: str | None, sha256: str | None) -> None:
        """What the heartbeat says about the model (after start or a model switch)."""
        self._model_name, self._model_format, self._model_sha256 = name, fmt, sha256

    def collect(self, stats: dict[str, Any]) -> Health:
        """A heartbeat: the service's stats (fps, inference_ms, camera, outbox_depth, equipment)
        plus uptime, CPU %, temperature and throttling, memory, disk free and hashes."""
        temp, flags = self.temperature_and_throttling()
        extra = {k: v for k, v in stats.items() if k not in _STATS_KEYS}
        fields: dict[str, Any] = {
            "ts": utc_now(),
            "version": edge.__version__,
            "uptime_s": round(self._clock() - self._started, 1),
            "fps": stats.get("fps"),
            "inference_ms": stats.get("inference_ms"),
            "camera": stats.get("camera"),
            "outbox_depth": stats.get("outbox_depth"),
            "equipment": stats.get("equipment"),
            "cpu_percent": self.cpu_percent(),
            "temperature_c": temp,
            "throttled": None if flags is None else bool(flags & THROTTLED_NOW_MASK),
            "memory_percent": self.memory_percent(),
            "disk_free_mb": self.disk_free_mb(),
            "model": self._model_name,
            "model_format": self._model_format,
            "model_sha256": self._model_sha256,
            "config_hash": self._config_hash(),
            **extra,
        }
        if flags is not None:
            fields["throttled_flags"] = f"0x{flags:x}"
        boot = self._read("proc/uptime")
        if boot:
            fields["system_uptime_s"] = float(boot.split()[0])
        return Health(**fields)

    # ---- one reading each ------------------------------------------------------------

    def _read(self, rel: str | Path) -> str | None:
        """Text of a file under sys_root (or an absolute path), or None."""
        try:
            return (self._root / rel).read_text()
        except OSError:
            return None

    def _vc(self, *args: str) -> str | None:
        """Output of vcgencmd args, or None when it is absent or fails."""
        if not self._vcgencmd:
            return None
        try:
            out = subprocess.run([self._vcgencmd, *args], capture_output=True, text=True,
                                 timeout=3, check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            log.debug("vcgencmd %s failed: %s", args[0], exc)
            return None
        return out.stdout

    def temperature_and_throttling(self) -> tuple[float | None, int | None]:
        """SoC temperature in °C and throttling flags: vcgencmd first, then sysfs; None absent."""
        temp = flags = None
        out = self._vc("measure_temp")
        if out:
            temp = parse_vcgencmd_temp(out)
        out = self._vc("get_throttled")
        if out:
            flags = parse_throttled(out)
        if temp is None:
            temp = self._sysfs_temperature()
        if flags is None:
            raw = self._read("sys/devices/platform/soc/soc:firmware/get_throttled")
            flags = parse_throttled(raw) if raw else None
        return temp, flags

    def _sysfs_temperature(self) -> float | None:
        """The CPU thermal zone (or the first one) in °C."""
        zones = sorted((self._root / "sys/class/thermal").glob("thermal_zone*"))
        best = None
        for zone in zones:
            kind = self._read(zone / "type") or ""
            raw = self._read(zone / "temp")
            try:
                value = int(raw.strip()) / 1000.0 if raw else None
            except ValueError:
                value = None
            if value is None:
                continue
            if "cpu" in kind or "soc" in kind:
                return value
            best = value if best is None else best
        return best

    def cpu_percent(self) -> float | None:
        """Busy share of all CPUs since the previous heartbeat (since boot the first time)."""
        text = self._read("proc/stat")
        if not text or not text.startswith("cpu "):
            return None
        try:
            values = [int(v) for v in text.splitlines()[0].split()[1:]]
        except ValueError:
            return None
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        total = sum(values[:8])
        last = self._cpu_last
        if last is not None and total - last[0] <= 0:
            return self._cpu_pct                  # no tick since the last call
        self._cpu_last = (total, idle)
        if last is not None:
            total, idle = total - last[0], idle - last[1]
        if total <= 0:
            return None
        self._cpu_pct = round(100.0 * (total - idle) / total, 1)
        return self._cpu_pct

    def memory_percent(self) -> float | None:
        """Share of memory in use (MemTotal less MemAvailable)."""
        text = self._read("proc/meminfo")
        if not text:
            return None
        info: dict[str, int] = {}
        for line in text.splitlines():
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                info[name] = int(parts[0])
        total, avail = info.get("MemTotal"), info.get("MemAvailable")
        if not total or avail is None:
            return None
        return round(100.0 * (total - avail) / total, 1)

    def disk_free_mb(self) -> float | None:
        """Free space of the file system holding the outbox."""
        folder = Path(self._cfg.outbox).parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        try:
            return round(shutil.disk_usage(folder).free / 1e6, 1)
        except OSError:
            return None

    def _config_hash(self) -> str | None:
        """Hash of the config file as it is on disk now."""
        try:
            return config_hash(self._config_path)
        except OSError:
            return None

