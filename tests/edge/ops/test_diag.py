"""diag: each check against real things (photo, YOLO, Mosquitto, SQLite), and each failure."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from gpiozero.pins.mock import MockFactory

import edge.ops.diag as diag
from edge.config import load_config
from edge.link.outbox import Outbox
from edge.ops.diag import CHECKS, CheckFailed, check_clock, format_results, run_checks
from protocol import Event
from server.link.broker import Mosquitto

ROOT = Path(__file__).resolve().parents[3]
ASSETS = Path(__import__("ultralytics").__file__).parent / "assets"


def write_node(tmp: Path, model_file: Path, broker_url: str, **over: Any) -> Path:
    """A node config in tmp whose camera is a folder holding bus.jpg."""
    cam = tmp / "cam"
    cam.mkdir(exist_ok=True)
    shutil.copy(ASSETS / "bus.jpg", cam / "bus.jpg")
    raw: dict[str, Any] = {
        "node_id": "heyuan-01", "pond_id": "heyuan-shantang",
        "camera": {"source": "cam", "fps": 5},
        "model": {"path": str(model_file), "labels": {"person": ["person", "Normal", "Fall"]}},
        "zones": {"water": [[0, 0.62], [1, 0.62], [1, 1], [0, 1]],
                  "bank": [[0, 0.40], [1, 0.40], [1, 0.62], [0, 0.62]]},
        "stature": {"references": [
            {"foot": [0.5, 0.60], "head": [0.5, 0.32], "height_m": 1.75},
            {"foot": [0.3, 0.45], "head": [0.3, 0.29], "height_m": 1.75}]},
        "mqtt": {"url": broker_url},
        "outbox": "state/outbox.db",
        "gpio": {"horn": 17, "light": 27, "status_led": 22, "sos_button": 5, "pir": 4},
    }
    for key, value in over.items():
        raw[key] = value
    path = tmp / "node.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
    yield f
    f.reset()


def by_name(results: list[diag.CheckResult]) -> dict[str, diag.CheckResult]:
    return {r.name: r for r in results}


def test_all_checks_pass_on_a_healthy_node(tmp_path: Path, model_path: Path,
                                           mosquitto: Mosquitto, factory: MockFactory) -> None:
    path = write_node(tmp_path, model_path, mosquitto.url)
    Outbox(load_config(path).outbox).close()
    results = run_checks(load_config(path), str(path), pin_factory=factory)
    assert [r.name for r in results] == list(CHECKS)
    failed = [r for r in results if not r.ok]
    assert not failed, format_results(results)
    r = by_name(results)
    assert r["camera"].detail.startswith("810x1080, brightness ")
    assert "ms/frame at 640" in r["model"].detail
    assert "round trip" in r["broker"].detail
    assert "calibrated with 2 references" in r["zones"].detail
    assert "horn GPIO17 toggled" in r["gpio"].detail and "sos_button GPIO5 released" in \
        r["gpio"].detail
    assert "0 events waiting" in r["outbox"].detail
    # Each output really went high then low on its pin.
    for pin in (17, 27, 22):
        assert [s.state for s in factory.pin(pin).states] == [False, True, False]
    text = format_results(results)
    assert text.count("✓") == len(CHECKS) and "全部通过 / all checks passed" in text


def test_cli_json_and_exit_codes(tmp_path: Path, model_path: Path,
                                 mosquitto: Mosquitto) -> None:
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "YOLO_OFFLINE": "1"}
    path = write_node(tmp_path, model_path, mosquitto.url)
    out = subprocess.run([sys.executable, "-m", "edge.cli", "diag", str(path), "--json"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    report = json.loads(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
    assert report["ok"] is True and len(report["checks"]) == len(CHECKS)
    mosquitto.stop()                                   # broker gone: exit code 1, with a hint
    path = write_node(tmp_path, tmp_path / "gone.pt", mosquitto.url)
    out = subprocess.run([sys.executable, "-m", "edge.cli", "diag", str(path)],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 1
    line = next(ln for ln in out.stdout.splitlines() if "broker" in ln)
    assert line.startswith("✗") and "Connection refused" in line
    assert "→ 检查网络" in out.stdout and "2 check(s) failed" in out.stdout


def test_config_changed_on_disk_is_reported(tmp_path: Path, model_path: Path) -> None:
    path = write_node(tmp_path, model_path, "mqtt://127.0.0.1:1")
    cfg = load_config(path)
    path.write_text(path.read_text().replace("heyuan-01", "Bad Id!"))
    r = by_name(run_checks(cfg, str(path), skip=CHECKS[1:]))["config"]
    assert not r.ok and "node_id" in r.detail and "--check-config" in r.hint


@pytest.mark.parametrize(("fill", "words"), [(3, "too dark"), (252, "overexposed")])
def test_camera_dark_or_blinded(tmp_path: Path, model_path: Path, fill: int, words: str) -> None:
    path = write_node(tmp_path, model_path, "mqtt://127.0.0.1:1")
    cv2.imwrite(str(tmp_path / "cam" / "bus.jpg"), np.full((480, 640, 3), fill, np.uint8))
    r = by_name(run_checks(load_config(path), str(path), skip=set(CHECKS) - {"camera"}))
    assert not r["camera"].ok and words in r["camera"].detail and r["camera"].hint


def test_camera_missing_and_model_missing(tmp_path: Path, model_path: Path) -> None:
    path = write_node(tmp_path, model_path, "mqtt://127.0.0.1:1",
                      camera={"source": "no-such-clip.mp4"},
                      model={"path": "no-such.pt", "labels": {"person": ["person"]}})
    r = by_name(run_checks(load_config(path), str(path),
                           skip=set(CHECKS) - {"camera", "model"}))
    assert not r["camera"].ok and "no-such-clip.mp4" in r["camera"].detail
    assert not r["model"].ok and "not found" in r["model"].detail
    assert "fetch_model" in r["model"].hint


def test_model_whose_classes_the_label_map_does_not_name(tmp_path: Path,
                                                         model_path: Path) -> None:
    path = write_node(tmp_path, model_path, "mqtt://127.0.0.1:1",
                      model={"path": str(model_path), "labels": {"person": ["pedestrian"]}})
    r = by_name(run_checks(load_config(path), str(path), skip=set(CHECKS) - {"model"}))["model"]
    assert not r.ok and "Normal" in r.detail and "model.labels" in r.hint


@pytest.mark.parametrize(("over", "words"), [
    ({"zones": {"water": [[0, 0.6], [1, 1], [1, 0.6], [0, 1]]}}, "crosses itself"),
    ({"zones": {"water": [[0, 0.9], [0.05, 0.9], [0.05, 0.95]]}}, "covers only"),
    ({"stature": {"references": [{"foot": [0.5, 0.60], "head": [0.5, 0.55], "height_m": 1.7},
                                 {"foot": [0.3, 0.45], "head": [0.3, 0.20], "height_m": 1.7}]}},
     "taller nearer"),
    ({"equipment": [{"item": "lifebuoy", "roi": [0.05, 0.3, 0.08, 0.14],
                     "reference": "refs/lifebuoy.jpg"}]}, "no reference image for lifebuoy"),
])
def test_zone_and_calibration_faults(tmp_path: Path, model_path: Path, over: dict[str, Any],
                                     words: str) -> None:
    path = write_node(tmp_path, model_path, "mqtt://127.0.0.1:1", **over)
    r = by_name(run_checks(load_config(path), str(path), skip=set(CHECKS) - {"zones"}))["zones"]
    assert not r.ok and words in r.detail and r.hint


def test_gpio_pin_held_by_the_running_service(tmp_path: Path, model_path: Path,
                                              factory: MockFactory) -> None:
    from gpiozero import LED
    held = LED(17, pin_factory=factory)
    try:
        path = write_node(tmp_path, model_path, "mqtt://127.0.0.1:1")
        r = by_name(run_checks(load_config(path), str(path), pin_factory=factory,
                               skip=set(CHECKS) - {"gpio"}))["gpio"]
        assert not r.ok and "17" in r.detail and "systemctl stop" in r.hint
    finally:
        held.close()


def test_no_gpio_fitted(tmp_path: Path, model_path: Path) -> None:
    path = write_node(tmp_path, model_path, "mqtt://127.0.0.1:1", gpio={})
    r = by_name(run_checks(load_config(path), str(path), skip=set(CHECKS) - {"gpio"}))["gpio"]
    assert r.ok and r.detail == "no GPIO fitted"


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker with passwords and the shipped node ACL (no TLS)."""
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "heyuan-01", "pw-heyuan"],
                   check=True)
    extra = f"password_file {passwd}\nacl_file {ROOT / 'systemd/mosquitto/pondwatch.acl'}\n"
    with Mosquitto(data_dir=tmp_path / "mq", anonymous=False, conf_extra=extra) as broker:
        yield broker


def test_broker_with_acl_and_wrong_password(tmp_path: Path, model_path: Path,
                                            acl_broker: Mosquitto,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_node(tmp_path, model_path, acl_broker.url)
    skip = set(CHECKS) - {"broker"}
    monkeypatch.setenv("PONDWATCH_MQTT_PASSWORD", "pw-heyuan")
    r = by_name(run_checks(load_config(path), str(path), skip=skip))["broker"]
    assert r.ok and "heartbeat accepted" in r.detail and "ACL" in r.detail
    monkeypatch.setenv("PONDWATCH_MQTT_PASSWORD", "wrong")
    r = by_name(run_checks(load_config(path), str(path), skip=skip))["broker"]
    assert not r.ok and "refused the connection" in r.detail and "password" in r.hint


def test_broker_unreachable_fails(tmp_path: Path, model_path: Path) -> None:
    from server.link.broker import free_port
    path = write_node(tmp_path, model_path, f"mqtt://127.0.0.1:{free_port()}")
    r = by_name(run_checks(load_config(path), str(path), skip=set(CHECKS) - {"broker"}))
    assert not r["broker"].ok and "cannot reach" in r["broker"].detail


def test_low_disk(tmp_path: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_node(tmp_path, model_path, "mqtt://127.0.0.1:1")
    monkeypatch.setattr(diag, "MIN_FREE_MB", 1e12)
    r = by_name(run_checks(load_config(path), str(path), skip=set(CHECKS) - {"disk"}))["disk"]
    assert not r.ok and "MB free" in r.detail and "SD" in r.hint


def fake_tool(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    tool = folder / name
    tool.write_text("#!/bin/sh\n" + body + "\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize(("temp", "throttled", "ok", "words"), [
    ("55.0", "0x0", True, "55.0 °C"),
    ("84.2", "0x0", False, "84.2 °C"),
    ("60.0", "0x50005", False, "limited now"),
])
def test_temperature_and_throttling(tmp_path: Path, model_path: Path,
                                    monkeypatch: pytest.MonkeyPatch, temp: str, throttled: str,
                                    ok: bool, words: str) -> None:
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "vcgencmd", f"""case "$1" in
  measure_temp) echo "temp={temp}'C" ;;
  get_throttled) echo "throttled={throttled}" ;;
esac""")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    path = write_node(tmp_path, model_path, "mqtt://127.0.0.1:1")
    r = by_name(run_checks(load_config(path), str(path),
                           skip=set(CHECKS) - {"temperature"}))["temperature"]
    assert r.ok is ok and words in r.detail


def test_clock_checks(tmp_path: Path) -> None:
    assert "NTP synchronised" in check_clock()
    with pytest.raises(CheckFailed, match="1970-01-01"):
        check_clock(now=0.0)
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "timedatectl", "echo no")
    with pytest.raises(CheckFailed, match="synchronised: no") as exc:
        check_clock(timedatectl=str(bin_dir / "timedatectl"))
    assert "set-ntp" in exc.value.hint
    fake_tool(bin_dir, "timedatectl2", "echo yes")
    assert "synchronised: yes" in check_clock(timedatectl=str(bin_dir / "timedatectl2"))


def test_outbox_faults(tmp_path: Path, model_path: Path) -> None:
    skip = set(CHECKS) - {"outbox"}
    (tmp_path / "state").write_text("a file where the folder should be")
    path = write_node(tmp_path, model_path, "mqtt://127.0.0.1:1")
    r = by_name(run_checks(load_config(path), str(path), skip=skip))["outbox"]
    assert not r.ok and "not writable" in r.detail
    (tmp_path / "state").unlink()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "outbox.db").write_bytes(b"this is not sqlite" * 100)
    r = by_name(run_checks(load_config(path), str(path), skip=skip))["outbox"]
    assert not r.ok and "outbox" in r.detail and r.hint
    (tmp_path / "state" / "outbox.db").unlink()
    box = Outbox(tmp_path / "state" / "outbox.db")
    box.put(Event.make("sos", "heyuan-01", "heyuan-shantang"))
    box.close()
    r = by_name(run_checks(load_config(path), str(path), skip=skip))["outbox"]
    assert r.ok and "1 events waiting" in r.detail


def test_a_crashing_check_counts_as_failed(tmp_path: Path, model_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any) -> str:
        raise KeyError("surprise")
    monkeypatch.setattr(diag, "check_disk", boom)
    path = write_node(tmp_path, model_path, "mqtt://127.0.0.1:1")
    r = by_name(run_checks(load_config(path), str(path), skip=set(CHECKS) - {"disk"}))["disk"]
    assert not r.ok and "KeyError" in r.detail and "support" in r.hint
