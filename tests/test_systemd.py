"""systemd units pass `systemd-analyze verify` (in a throw-away root), are hardened, and install."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from edge.config import NodeConfig
from edge.link.client import mqtt_password

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "systemd"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")


def directives(unit: Path) -> dict[str, list[str]]:
    """Key → values (keys may repeat) of a unit file."""
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


@pytest.fixture(scope="module")
def sysroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with the distribution's units, ours, and stub binaries at the ExecStart paths."""
    root = tmp_path_factory.mktemp("sysroot")
    lib = root / "usr/lib/systemd"
    lib.mkdir(parents=True)
    for candidate in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if candidate.is_dir():
            shutil.copytree(candidate, lib / "system", symlinks=True)
            break
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS.glob("*.service"):
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
        for key in ("ExecStart", "ExecStartPre"):
            for value in directives(unit).get(key, []):
                exe = root / value.lstrip("-@+!").split()[0].lstrip("/")
                exe.parent.mkdir(parents=True, exist_ok=True)
                exe.write_text("#!/bin/sh\nexit 0\n")
                exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return root


def verify(root: Path, *units: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE
    return subprocess.run([ANALYZE, "verify", f"--root={root}", "--man=no", *units],
                          capture_output=True, text=True, timeout=60)


@needs_analyze
@pytest.mark.parametrize("unit", ["pondwatch-edge.service", "pondwatch-server.service"])
def test_systemd_analyze_verify_is_clean(sysroot: Path, unit: str) -> None:
    out = verify(sysroot, unit)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == "" and out.stdout.strip() == "", out.stderr


@needs_analyze
def test_verify_would_catch_a_broken_unit(sysroot: Path) -> None:
    broken = sysroot / "etc/systemd/system/pondwatch-broken.service"
    text = (UNITS / "pondwatch-edge.service").read_text()
    broken.write_text(text.replace("WatchdogSec=30", "WatchdogSec=half-a-minute"))
    assert "Failed to parse" in verify(sysroot, broken.name).stderr
    broken.write_text(text.replace("/opt/pondwatch/.venv/bin/pondwatch-edge run",
                                   "/opt/pondwatch/bin/missing run"))
    out = verify(sysroot, broken.name)
    assert out.returncode != 0 and "not executable" in out.stderr


@needs_analyze
@pytest.mark.parametrize(("unit", "threshold"), [("pondwatch-edge.service", 40),
                                                 ("pondwatch-server.service", 25)])
def test_security_exposure_stays_low(sysroot: Path, unit: str, threshold: int) -> None:
    assert ANALYZE
    out = subprocess.run([ANALYZE, "security", "--offline=true", f"--root={sysroot}",
                          f"--threshold={threshold}", "--no-pager", unit],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr


def test_edge_unit_has_what_the_node_needs() -> None:
    d = directives(UNITS / "pondwatch-edge.service")
    assert d["Type"] == ["notify"] and d["WatchdogSec"] == ["30"]
    assert d["Restart"] == ["always"] and d["StartLimitIntervalSec"] == ["0"]
    assert d["ProtectSystem"] == ["strict"] and d["ReadWritePaths"] == ["/var/lib/pondwatch"]
    assert d["StateDirectory"] == ["pondwatch"]
    env = " ".join(d["Environment"])
    assert "YOLO_OFFLINE=1" in env and "YOLO_CONFIG_DIR=/var/lib/pondwatch/ultralytics" in env
    assert set(d["SupplementaryGroups"][0].split()) == {"gpio", "video", "audio", "dialout",
                                                        "systemd-journal"}
    assert d["ExecStart"][0].endswith("pondwatch-edge run /etc/pondwatch/node.yaml")
    assert d["NoNewPrivileges"] == ["yes"] and d["CapabilityBoundingSet"] == [""]


def test_the_credential_is_where_the_node_reads_it(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    d = directives(UNITS / "pondwatch-edge.service")
    cred_id = d["LoadCredential"][0].split(":", 1)[0]
    (tmp_path / cred_id).write_text("s3cret-from-credstore\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.delenv("PONDWATCH_MQTT_PASSWORD", raising=False)
    cfg = NodeConfig.model_validate({"node_id": "heyuan-01", "pond_id": "p",
                                     "zones": {"water": [[0, 0.6], [1, 0.6], [1, 1]]}})
    assert mqtt_password(cfg) == "s3cret-from-credstore"


def test_server_unit_is_hardened() -> None:
    d = directives(UNITS / "pondwatch-server.service")
    assert d["Restart"] == ["always"] and d["StartLimitIntervalSec"] == ["0"]
    assert d["ProtectSystem"] == ["strict"] and d["PrivateDevices"] == ["yes"]
    assert d["ExecStart"][0].endswith("pondwatch-server run /etc/pondwatch/server.yaml")


def test_install_script_syntax_and_dry_run(tmp_path: Path) -> None:
    script = UNITS / "install-node.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    cfg = tmp_path / "node.yaml"
    cfg.write_text("node_id: heyuan-01\n")
    out = subprocess.run(["bash", str(script), "--dry-run", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for needle in ("python3-picamera2",
                   "usermod -a -G gpio,video,audio,dialout,systemd-journal pondwatch",
                   "--system-site-packages", "--check-config", "/etc/credstore",
                   "timedatectl set-ntp true", "pondwatch-edge diag",
                   "systemctl enable --now pondwatch-edge.service"):
        assert needle in out.stdout, needle


def test_install_script_sets_the_node_up_on_ncnn_by_default(tmp_path: Path) -> None:
    """The default run time is NCNN: the config's model is exported on the node (with its
    trust record) and the installed config points at the export, before --check-config;
    --runtime ultralytics keeps the .pt."""
    cfg = tmp_path / "node.yaml"
    cfg.write_text("node_id: heyuan-01\n")

    def steps(*extra: str) -> str:
        out = subprocess.run(["bash", str(UNITS / "install-node.sh"), "--dry-run", "--config",
                              str(cfg), *extra], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout
    ncnn = steps()
    export = ncnn.index("export NAME --format ncnn")
    assert ncnn.index("pnnx==") < export < ncnn.index("NAME_ncnn_model ncnn") < ncnn.index(
        "--check-config")
    assert "--format onnx" in steps("--runtime", "onnxruntime")
    assert "export NAME" not in steps("--runtime", "ultralytics")


@pytest.mark.parametrize("args", [[], ["--config", "/nonexistent.yaml"], ["--bogus"],
                                  ["--config", "{cfg}", "--runtime", "tensorrt"],
                                  ["--config", "{cfg}", "--password-file", "/nonexistent"]])
def test_install_script_refuses_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    cfg = tmp_path / "node.yaml"
    cfg.write_text("node_id: heyuan-01\n")
    argv = [a.replace("{cfg}", str(cfg)) for a in args]
    out = subprocess.run(["bash", str(UNITS / "install-node.sh"), "--dry-run", *argv],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr
