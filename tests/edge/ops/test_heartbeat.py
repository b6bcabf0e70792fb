"""Heartbeat contents on this machine, on a fake sysfs tree and with a fake vcgencmd."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

import edge
from edge.config import NodeConfig, config_hash
from edge.ops.heartbeat import HealthCollector, parse_throttled, parse_vcgencmd_temp
from protocol import MAX_HEALTH_BYTES, Health, decode, encode

CONFIG = """\
node_id: heyuan-01
pond_id: heyuan-shantang
zones:
  water: [[0, 0.6], [1, 0.6], [1, 1]]
outbox: state/outbox.db
"""
STATS = {"fps": 4.8, "inference_ms": 121.5, "camera": "ok", "outbox_depth": 2,
         "equipment": {"lifebuoy": "present"}}


@pytest.fixture
def cfg_path(tmp_path: Path) -> Path:
    path = tmp_path / "node.yaml"
    path.write_text(CONFIG)
    return path


def cfg(tmp_path: Path) -> NodeConfig:
    return NodeConfig.model_validate({"node_id": "heyuan-01", "pond_id": "heyuan-shantang",
                                      "zones": {"water": [[0, 0.6], [1, 0.6], [1, 1]]},
                                      "outbox": str(tmp_path / "state" / "outbox.db")})


def fake_root(tmp_path: Path, zones: dict[str, str], throttled: str | None = None) -> Path:
    root = tmp_path / "root"
    for i, (kind, temp) in enumerate(zones.items()):
        zone = root / "sys/class/thermal" / f"thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(temp + "\n")
    proc = root / "proc"
    proc.mkdir(parents=True)
    (proc / "stat").write_text("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n")
    (proc / "meminfo").write_text("MemTotal:  4000000 kB\nMemFree: 100 kB\n"
                                  "MemAvailable:  3000000 kB\n")
    (proc / "uptime").write_text("12345.67 20000.00\n")
    if throttled is not None:
        fw = root / "sys/devices/platform/soc/soc:firmware"
        fw.mkdir(parents=True)
        (fw / "get_throttled").write_text(throttled)
    return root


def fake_vcgencmd(tmp_path: Path, temp: str, throttled: str, rc: int = 0) -> str:
    script = tmp_path / "vcgencmd"
    script.write_text(f"""#!/bin/sh
case "$1" in
  measure_temp) echo "{temp}" ;;
  get_throttled) echo "{throttled}" ;;
esac
exit {rc}
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_heartbeat_on_this_machine(tmp_path: Path, cfg_path: Path) -> None:
    h = HealthCollector(cfg(tmp_path), str(cfg_path), "person-offline.pt", vcgencmd=None)
    hb = h.collect({**STATS, "link": "connected"})
    assert hb.version == edge.__version__
    assert hb.model == "person-offline.pt"
    assert hb.config_hash == config_hash(cfg_path)
    assert hb.fps == 4.8 and hb.inference_ms == 121.5 and hb.camera == "ok"
    assert hb.outbox_depth == 2 and hb.equipment == {"lifebuoy": "present"}
    assert hb.model_extra == {"link": "connected", "system_uptime_s": pytest.approx(
        hb.model_extra["system_uptime_s"])}
    assert hb.uptime_s is not None and 0 <= hb.uptime_s < 60
    assert hb.disk_free_mb and hb.disk_free_mb > 1
    assert hb.memory_percent is not None and 0 < hb.memory_percent < 100
    assert hb.cpu_percent is not None and 0 <= hb.cpu_percent <= 100
    second = h.collect(STATS)                     # a delta since the first call
    assert second.cpu_percent is not None and 0 <= second.cpu_percent <= 100
    raw = encode(hb)
    assert len(raw) < MAX_HEALTH_BYTES
    assert decode(Health, raw, MAX_HEALTH_BYTES).config_hash == hb.config_hash


def test_sysfs_prefers_the_cpu_zone(tmp_path: Path, cfg_path: Path) -> None:
    root = fake_root(tmp_path, {"acpitz": "30000", "cpu-thermal": "51234"}, throttled="50005\n")
    h = HealthCollector(cfg(tmp_path), str(cfg_path), "m", sys_root=str(root), vcgencmd=None)
    hb = h.collect(STATS)
    assert hb.temperature_c == pytest.approx(51.234)
    assert hb.throttled is True and hb.model_extra["throttled_flags"] == "0x50005"
    assert hb.memory_percent == 25.0
    assert hb.cpu_percent == 20.0                 # user+system 200 of 1000 (iowait idles)
    assert hb.model_extra["system_uptime_s"] == 12345.67


def test_no_sensor_reports_none(tmp_path: Path, cfg_path: Path) -> None:
    root = fake_root(tmp_path, {"cpu-thermal": "not-a-number"})
    h = HealthCollector(cfg(tmp_path), str(cfg_path), "m", sys_root=str(root), vcgencmd=None)
    hb = h.collect(STATS)
    assert hb.temperature_c is None and hb.throttled is None
    assert "throttled_flags" not in (hb.model_extra or {})


def test_empty_root_and_missing_config(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    h = HealthCollector(cfg(tmp_path), str(tmp_path / "gone.yaml"), "m", sys_root=str(empty),
                        vcgencmd=None)
    hb = h.collect({})
    assert hb.config_hash is None and hb.cpu_percent is None and hb.memory_percent is None
    assert hb.fps is None and hb.camera is None


def test_vcgencmd_wins_over_sysfs(tmp_path: Path, cfg_path: Path) -> None:
    root = fake_root(tmp_path, {"cpu-thermal": "40000"})
    vc = fake_vcgencmd(tmp_path, "temp=67.5'C", "throttled=0x50000")
    hb = HealthCollector(cfg(tmp_path), str(cfg_path), "m", sys_root=str(root),
                         vcgencmd=vc).collect(STATS)
    assert hb.temperature_c == 67.5
    assert hb.throttled is False                  # happened since boot, not now
    assert hb.model_extra["throttled_flags"] == "0x50000"


def test_failing_vcgencmd_falls_back_to_sysfs(tmp_path: Path, cfg_path: Path) -> None:
    root = fake_root(tmp_path, {"cpu-thermal": "40000"})
    vc = fake_vcgencmd(tmp_path, "VCHI initialization failed", "", rc=1)
    hb = HealthCollector(cfg(tmp_path), str(cfg_path), "m", sys_root=str(root),
                         vcgencmd=vc).collect(STATS)
    assert hb.temperature_c == 40.0 and hb.throttled is None


@pytest.mark.parametrize(("text", "value"), [("temp=48.3'C\n", 48.3), ("temp=", None),
                                             ("garbage", None)])
def test_parse_temp(text: str, value: float | None) -> None:
    assert parse_vcgencmd_temp(text) == value


@pytest.mark.parametrize(("text", "value"), [("throttled=0x0\n", 0), ("50005", 0x50005),
                                             ("throttled=zz", None)])
def test_parse_throttled(text: str, value: int | None) -> None:
    assert parse_throttled(text) == value
