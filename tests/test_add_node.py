"""systemd/mosquitto/add-node.sh: reserved ids refused, passwords never on a command line or
in a readable file, one account per server replica."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support import SHIPPED_MOSQUITTO

SCRIPT = SHIPPED_MOSQUITTO / "add-node.sh"
pytestmark = pytest.mark.skipif(
    not (shutil.which("strace") and shutil.which("mosquitto_passwd")),
    reason="needs strace and mosquitto_passwd")


def _run(d: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run add-node.sh under strace; returns the result and every execve it made."""
    bin_dir = d / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "systemctl").write_text("#!/bin/sh\nexit 0\n")  # no reload of a real broker
    (bin_dir / "systemctl").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}",
               PONDWATCH_PASSWD_FILE=str(d / "pondwatch.passwd"),
               PONDWATCH_ACL_FILE=str(d / "pondwatch.acl"))
    trace = d / "execve.trace"
    res = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-s", "4096", "-o",
                          str(trace), "bash", str(SCRIPT), *args],
                         env=env, capture_output=True, text=True, timeout=30)
    return res, trace.read_text()


def _password(out: str) -> str:
    """The password add-node.sh printed."""
    return out.split(" password: ")[1].split()[0]


def test_node_password_never_on_a_command_line_nor_in_a_readable_file(tmp_path: Path) -> None:
    shutil.copy(SHIPPED_MOSQUITTO / "pondwatch.acl", tmp_path / "pondwatch.acl")
    res, execs = _run(tmp_path, "heyuan-01")
    assert res.returncode == 0, res.stderr
    pw = _password(res.stdout)
    assert len(pw) >= 20
    assert "mosquitto_passwd" in execs, "the trace sees the commands"
    assert pw not in execs, "the password was on some process's command line"
    passwd = tmp_path / "pondwatch.passwd"
    assert passwd.read_text().startswith("heyuan-01:$7$") and pw not in passwd.read_text()
    assert stat.S_IMODE(passwd.stat().st_mode) & 0o007 == 0, "world-readable password file"
    assert [p.name for p in tmp_path.iterdir()
            if p.is_file() and p.name != "execve.trace" and pw.encode() in p.read_bytes()
            ] == [], "the password was written in clear"


@pytest.mark.parametrize("node", ["pondwatch", "pondwatch-server", "pondwatch-server-a"])
def test_reserved_node_ids_are_refused(tmp_path: Path, node: str) -> None:
    res, _ = _run(tmp_path, node)
    assert res.returncode == 2 and "reserved" in res.stderr
    assert not (tmp_path / "pondwatch.passwd").exists(), "no account was made"


def test_each_server_replica_gets_its_own_account_and_acl_block(tmp_path: Path) -> None:
    shutil.copy(SHIPPED_MOSQUITTO / "pondwatch.acl", tmp_path / "pondwatch.acl")
    for _ in range(2):  # re-keying adds no second ACL block
        res, execs = _run(tmp_path, "--server", "b")
        assert res.returncode == 0, res.stderr
        assert _password(res.stdout) not in execs
    acl = (tmp_path / "pondwatch.acl").read_text().splitlines()
    assert acl.count("user pondwatch-server-b") == 1
    assert acl[acl.index("user pondwatch-server-b") + 1] == "topic readwrite pondwatch/v1/#"
    assert (tmp_path / "pondwatch.passwd").read_text().startswith("pondwatch-server-b:$7$")
