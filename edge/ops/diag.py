"""The technician's checklist (`pondwatch-edge diag`), also run remotely as the selftest command."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import unicodedata
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.config import ConfigError, NodeConfig, load_config
from edge.errors import EdgeError

log = logging.getLogger(__name__)

MIN_FREE_MB = 200.0
MAX_TEMP_C = 80.0
DARK, BRIGHT = 12.0, 245.0
CHECKS = ("config", "camera", "model", "zones", "gpio", "broker", "disk", "temperature",
          "clock", "outbox")
TITLES = {"config": "配置 config", "camera": "摄像头 camera", "model": "模型 model",
          "zones": "区域与标定 zones", "gpio": "声光输出 GPIO", "broker": "服务器连接 broker",
          "disk": "磁盘 disk", "temperature": "温度 temperature", "clock": "时钟 clock",
          "outbox": "发件箱 outbox"}


@dataclass(frozen=True)
class CheckResult:
    """One line of the checklist: name, pass or fail, what was seen, and what to do."""

    name: str
    ok: bool
    detail: str
    hint: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class CheckFailed(EdgeError, RuntimeError):
    """A failed check: the message is the detail, hint says what to do."""

    def __init__(self, detail: str, hint: str) -> None:
        """Keep detail and hint."""
        super().__init__(detail)
        self.hint = hint


# ---- the checks ------------------------------------------------------------------------

def check_config(cfg: NodeConfig, config_path: str) -> str:
    """The config file on disk loads and validates."""
    try:
        disk = load_config(config_path)
    except ConfigError as exc:
        raise CheckFailed(str(exc).splitlines()[0],
                          "修正上面提到的字段 / fix the field named above, then "
                          "`pondwatch-edge run CONFIG --check-config`") from exc
    return f"node {disk.node_id}, pond {disk.pond_id}"


def check_camera(cfg: NodeConfig, frames: int = 3, timeout_s: float = 10.0) -> tuple[str, Any]:
    """The camera gives frames; their resolution and brightness. Returns (detail, last frame)."""
    from edge.camera.sources import SourceError, is_live, open_source
    hint = "检查摄像头排线/USB/网线和 camera.source / check cable, power and camera.source"
    try:
        src = open_source(cfg.camera.source, cfg.camera.fps, width=cfg.camera.width,
                          height=cfg.camera.height, stall_s=cfg.camera.stall_s)
    except SourceError as exc:
        raise CheckFailed(str(exc), hint) from exc
    got: list[Any] = []
    live = is_live(cfg.camera.source)
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < frames and time.monotonic() < deadline:
            item = src.read()
            if item is not None:
                got.append(item[0])
            elif not live:
                break                     # a file or folder that has ended
    finally:
        src.close()
    if not got:
        raise CheckFailed(f"no frame within {timeout_s:.0f} s", hint)
    frame = got[-1]
    h, w = frame.shape[:2]
    brightness = float(frame.mean())
    detail = f"{w}x{h}, brightness {brightness:.0f}/255, {len(got)} frames"
    if brightness < DARK:
        raise CheckFailed(detail + ": too dark",
                          "镜头被遮挡或夜间无补光 / lens covered or no IR light")
    if brightness > BRIGHT:
        raise CheckFailed(detail + ": overexposed", "镜头正对强光 / camera faces the sun or a lamp")
    return detail, frame


def check_model(cfg: NodeConfig, frame: Any = None) -> str:
    """The model loads, its classes match the label map, and one inference takes so long."""
    import numpy as np

    from edge.vision.detector import DetectorError, load_detector
    from edge.vision.offline import ultralytics_offline
    ultralytics_offline()
    t0 = time.monotonic()
    try:
        det = load_detector(cfg.model)
    except DetectorError as exc:
        raise CheckFailed(str(exc), "运行 scripts/fetch_model.py 或检查 model.path 与 "
                          "model.labels / fetch the model, check model.path and model.labels"
                          ) from exc
    load_s = time.monotonic() - t0
    img = frame if frame is not None else np.full((480, 640, 3), 114, np.uint8)
    det.track(img)                       # warm-up
    times = []
    for _ in range(2):
        t1 = time.monotonic()
        det.track(img)
        times.append((time.monotonic() - t1) * 1000)
    det.reset()
    ms = min(times)
    detail = f"{Path(cfg.model.path).name} loaded in {load_s:.1f} s, {ms:.0f} ms/frame " \
             f"at {cfg.model.imgsz}"
    if ms > 2000:
        raise CheckFailed(detail, "推理太慢：减小 model.imgsz 或导出 NCNN / too slow: smaller "
                          "imgsz or an NCNN export")
    return detail


def _area(poly: list[tuple[float, float]]) -> float:
    """Shoelace area of a polygon."""
    return abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in
                   zip(poly, poly[1:] + poly[:1], strict=True))) / 2


def _crosses(poly: list[tuple[float, float]]) -> bool:
    """True when two non-adjacent edges of the polygon intersect."""
    def orient(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> float:
        """The orientation of an ordered point triple (for the self-crossing check)."""
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    edges = list(zip(poly, poly[1:] + poly[:1], strict=True))
    n = len(edges)
    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue
            (a, b), (c, d) = edges[i], edges[j]
            if orient(a, b, c) * orient(a, b, d) < 0 and orient(c, d, a) * orient(c, d, b) < 0:
                return True
    return False


def check_zones(cfg: NodeConfig) -> str:
    """Zones are real polygons, the calibration is plausible, equipment references exist."""
    hint = "用 `pondwatch-edge preview` 重新画区域 / redraw the zones with preview"
    parts = []
    for name in ("water", "bank"):
        poly = [tuple(p) for p in getattr(cfg.zones, name)]
        if not poly:
            continue
        if _crosses(poly):
            raise CheckFailed(f"zone {name} crosses itself", hint)
        area = _area(poly)
        if area < 0.005:
            raise CheckFailed(f"zone {name} covers only {area:.1%} of the frame", hint)
        parts.append(f"{name} {area:.0%}")
    refs = sorted(cfg.stature.references, key=lambda r: r.foot[1])
    if refs:
        ppm = [(r.foot[1] - r.head[1]) / r.height_m for r in refs]
        if any(b <= a for a, b in zip(ppm, ppm[1:], strict=False)):
            raise CheckFailed("calibration: people do not look taller nearer the camera",
                              "重新量取参考身高（近处的人应显得更高）/ re-measure the references")
        parts.append(f"calibrated with {len(refs)} references")
    else:
        parts.append("not calibrated: every person counts as a possible child")
    missing = [e.item for e in cfg.equipment if e.reference and not Path(e.reference).exists()]
    if missing:
        raise CheckFailed(f"no reference image for {', '.join(missing)}",
                          "运行 `pondwatch-edge enrol CONFIG` / run enrol")
    return ", ".join(parts)


def check_gpio(cfg: NodeConfig, pin_factory: Any = None, toggle_s: float = 0.2) -> str:
    """Each fitted output switches on and off (listen for the relay); inputs read."""
    from gpiozero import Button, DigitalOutputDevice, GPIOZeroError, MotionSensor
    gpio = cfg.gpio
    hint = "确认在树莓派上、用户在 gpio 组、服务已停止 / on the Pi, user in group gpio, " \
           "service stopped (`systemctl stop pondwatch-edge`)"
    parts = []
    try:
        for name in ("horn", "light", "status_led"):
            pin = getattr(gpio, name)
            if pin is None:
                continue
            with DigitalOutputDevice(pin, initial_value=False, pin_factory=pin_factory) as dev:
                dev.on()
                on = dev.value == 1
                time.sleep(toggle_s)
                dev.off()
                if not on or dev.value != 0:
                    raise CheckFailed(f"{name} (GPIO{pin}) did not switch", hint)
            parts.append(f"{name} GPIO{pin} toggled")
        if gpio.sos_button is not None:
            with Button(gpio.sos_button, pull_up=True, pin_factory=pin_factory) as btn:
                parts.append(f"sos_button GPIO{gpio.sos_button} "
                             f"{'PRESSED (stuck?)' if btn.is_pressed else 'released'}")
        if gpio.pir is not None:
            with MotionSensor(gpio.pir, pin_factory=pin_factory) as pir:
                parts.append(f"pir GPIO{gpio.pir} {'motion' if pir.motion_detected else 'idle'}")
    except (GPIOZeroError, OSError, RuntimeError) as exc:
        raise CheckFailed(f"{type(exc).__name__}: {exc}", hint) from exc
    return "; ".join(parts) or "no GPIO fitted"


def check_broker(cfg: NodeConfig, timeout_s: float = 8.0) -> str:
    """Connect with the node's credentials and send a message round trip (see diag_broker)."""
    from edge.ops.diag_broker import round_trip
    try:
        return round_trip(cfg, timeout_s)
    except RuntimeError as exc:
        raise CheckFailed(str(exc), "检查网络/4G、mqtt.url、密码和证书 / check the link, mqtt.url, "
                          "password and CA") from exc


def _existing(folder: Path) -> Path:
    """folder, or its nearest existing parent."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_disk(cfg: NodeConfig) -> str:
    """Free space where the outbox lives."""
    usage = shutil.disk_usage(_existing(Path(cfg.outbox).parent))
    free_mb = usage.free / 1e6
    detail = f"{free_mb:.0f} MB free of {usage.total / 1e6:.0f} MB"
    if free_mb < MIN_FREE_MB:
        raise CheckFailed(detail, "清理空间或换更大的 SD 卡 / free space or a larger SD card")
    return detail


def check_temperature(cfg: NodeConfig, config_path: str) -> str:
    """SoC temperature and throttling (vcgencmd or sysfs)."""
    from edge.ops.heartbeat import THROTTLED_NOW_MASK, HealthCollector
    temp, flags = HealthCollector(cfg, config_path, "").temperature_and_throttling()
    detail = (f"{temp:.1f} °C" if temp is not None else "no temperature sensor") + (
        f", throttled flags 0x{flags:x}" if flags is not None else "")
    if temp is not None and temp >= MAX_TEMP_C:
        raise CheckFailed(detail, "加遮阳罩/散热片 / add a sun shade or heat sink")
    if flags is not None and flags & THROTTLED_NOW_MASK:
        raise CheckFailed(detail + " (limited now)",
                          "电源电压不足或过热：换 5V 3A 电源 / under-voltage or heat: "
                          "use a 5 V 3 A supply")
    return detail


def check_clock(now: float | None = None, timedatectl: str | None = "timedatectl") -> str:
    """The clock is plausible (a Pi has no RTC) and NTP synchronised when systemd can tell."""
    now = time.time() if now is None else now
    stamp = datetime.fromtimestamp(now, UTC)
    hint = "启用 NTP：`timedatectl set-ntp true`，检查网络 / enable NTP and check the link"
    if stamp.year < 2025:
        raise CheckFailed(f"clock says {stamp:%Y-%m-%d %H:%M} UTC", hint)
    exe = shutil.which(timedatectl) if timedatectl else None
    sync = "unknown"
    if exe:
        try:
            out = subprocess.run([exe, "show", "-p", "NTPSynchronized", "--value"],
                                 capture_output=True, text=True, timeout=5, check=False)
            if out.returncode == 0 and out.stdout.strip() in ("yes", "no"):
                sync = out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    detail = f"{stamp:%Y-%m-%d %H:%M:%S} UTC, NTP synchronised: {sync}"
    if sync == "no":
        raise CheckFailed(detail, hint)
    return detail


def check_outbox(cfg: NodeConfig) -> str:
    """The outbox folder takes a synced write and an existing outbox passes quick_check."""
    folder = Path(cfg.outbox).parent
    hint = f"检查 {folder} 的权限与 SD 卡 / check permissions of {folder} and the SD card"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".diag-") as fh:
            fh.write(b"pondwatch diag\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise CheckFailed(f"{folder} not writable: {exc.strerror or exc}", hint) from exc
    db = Path(cfg.outbox)
    if not db.exists():
        return f"{folder} writable; outbox not created yet"
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
            depth = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    except sqlite3.Error as exc:
        raise CheckFailed(f"outbox {db} unreadable: {exc}", hint) from exc
    if verdict != "ok":
        raise CheckFailed(f"outbox {db} damaged: {verdict}", hint)
    return f"{folder} writable; {depth} events waiting"


# ---- running them ----------------------------------------------------------------------

def run_checks(cfg: NodeConfig, config_path: str, *, pin_factory: Any = None,
               skip: Collection[str] = ()) -> list[CheckResult]:
    """Every check in CHECKS order except those in skip; a crashing check counts as failed."""
    frame: Any = None

    def camera() -> str:
        """Open the camera and describe one frame."""
        nonlocal frame
        detail, frame = check_camera(cfg)
        return detail

    steps: dict[str, Callable[[], str]] = {
        "config": lambda: check_config(cfg, config_path),
        "camera": camera,
        "model": lambda: check_model(cfg, frame),
        "zones": lambda: check_zones(cfg),
        "gpio": lambda: check_gpio(cfg, pin_factory),
        "broker": lambda: check_broker(cfg),
        "disk": lambda: check_disk(cfg),
        "temperature": lambda: check_temperature(cfg, config_path),
        "clock": lambda: check_clock(),
        "outbox": lambda: check_outbox(cfg),
    }
    results = []
    for name in CHECKS:
        if name in skip:
            continue
        try:
            results.append(CheckResult(name, True, steps[name]()))
        except CheckFailed as exc:
            results.append(CheckResult(name, False, str(exc), exc.hint))
        except Exception as exc:
            log.exception("diag check %s crashed", name)
            results.append(CheckResult(name, False, f"{type(exc).__name__}: {exc}",
                                       "请把此输出发给维护人员 / send this output to support"))
    return results


def format_results(results: list[CheckResult]) -> str:
    """✓/✗ lines with a hint under each failure."""
    lines = []
    for r in results:
        title = TITLES.get(r.name, r.name)
        pad = " " * max(1, 24 - sum(2 if unicodedata.east_asian_width(ch) == "W" else 1
                                    for ch in title))
        lines.append(f"{'✓' if r.ok else '✗'} {title}{pad}{r.detail}")
        if not r.ok and r.hint:
            lines.append(f"    → {r.hint}")
    failed = sum(not r.ok for r in results)
    lines.append("全部通过 / all checks passed" if not failed
                 else f"{failed} 项未通过 / {failed} check(s) failed")
    return "\n".join(lines)


def run_diag(cfg: NodeConfig, config_path: str, as_json: bool) -> int:
    """pondwatch-edge diag: print the checklist; 0 when every check passes, 1 otherwise."""
    results = run_checks(cfg, config_path)
    ok = all(r.ok for r in results)
    if as_json:
        print(json.dumps({"ok": ok, "node_id": cfg.node_id,
                          "checks": [r.as_dict() for r in results]}, ensure_ascii=False))
    else:
        print(format_results(results))
    return 0 if ok else 1
