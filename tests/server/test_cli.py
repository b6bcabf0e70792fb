"""pondwatch-server's command line: exit codes and messages of its error paths."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import socket
from pathlib import Path

import pytest

import server
from server.cli import main
from server.core.config import parse_config
from server.core.errors import ServerError
from server.runner import ListenError, Server
from tests.server.conftest import SECRET


def _admin(db: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """An admin in the database at db; the export arguments that name it."""
    from server.access import auth
    from server.services import Services

    svc = Services(parse_config({"database": db, "environment": "dev"}))
    svc.prepare()
    with svc.sessions() as s, s.begin():
        auth.set_user(s, "root", "root-pass-1234", "admin")
    svc.engine.dispose()
    monkeypatch.setenv("PONDWATCH_PASSWORD", "root-pass-1234")
    return ["--database", db, "--user", "root"]


def test_dataset_export_from_an_empty_database(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """No resolved alert with a frame yet: exit 1 saying so, and no folder written."""
    out = tmp_path / "ds"
    who = _admin(f"sqlite:///{tmp_path / 'cli.db'}", monkeypatch)
    assert main(["dataset", "export", str(out), "--since", "2024-05-01", *who]) == 1
    assert "no resolved real or false_alarm alert" in capsys.readouterr().err
    assert not out.exists()


def test_dataset_export_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad --since is 2; a folder that is not empty is 1 and keeps its files; no --user, or
    a user who is not an admin, is 2 (the images may show minors: admins only)."""
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    who = _admin(db, monkeypatch)
    out = tmp_path / "ds"
    with pytest.raises(SystemExit) as no_user:
        main(["dataset", "export", str(out), "--since", "2024-05-01", "--database", db])
    assert no_user.value.code == 2 and "--user" in capsys.readouterr().err
    assert main(["dataset", "export", str(out), "--since", "last week", *who]) == 2
    assert "'last week' is not an ISO 8601 date" in capsys.readouterr().err
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["dataset", "export", str(out), "--since", "2024-05-01", *who]) == 1
    assert "is not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    monkeypatch.setenv("PONDWATCH_PASSWORD", "whatever")
    assert main(["dataset", "export", str(tmp_path / "new"), "--since", "2024-05-01",
                 "--database", db, "--user", "nobody"]) == 2
    assert "admins only" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_every_server_error_is_a_server_error_and_a_builtin() -> None:
    """Each exception class the server defines derives from ServerError and from the builtin
    it stands for (ValueError, RuntimeError, …), so callers may catch either."""
    found = []
    for info in pkgutil.walk_packages(server.__path__, "server."):
        if ".migrations" in info.name:
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (issubclass(cls, BaseException) and cls.__module__ == info.name
                    and cls is not ServerError):
                found.append(cls)
                assert issubclass(cls, ServerError), cls
                builtin = [b for b in cls.__mro__ if b.__module__ == "builtins"
                           and b not in (Exception, BaseException, object)]
                assert builtin, f"{cls.__qualname__} mixes in no builtin exception"
    names = {c.__name__ for c in found}
    assert {"ConfigError", "RegistryError", "BrokerError", "ModelError", "UserError"} <= names


def test_malformed_config_exits_2_naming_the_field(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown key, a bad value and a file that is not UTF-8: one line on stderr, exit 2."""
    cfg = tmp_path / "server.yaml"
    cfg.write_text("environment: dev\nmqtt: {port: 1883}\n", encoding="utf-8")
    assert main(["run", str(cfg), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "field mqtt.port" in err and "Traceback" not in err
    cfg.write_text("environment: dev\nheartbeat_misses: many\n", encoding="utf-8")
    assert main(["run", str(cfg), "--check-config"]) == 2
    assert "field heartbeat_misses" in capsys.readouterr().err
    cfg.write_bytes(b"environment: dev\nhttp: {public_url: 'http://\xff\xfe'}\n")
    assert main(["run", str(cfg), "--check-config"]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_unreadable_registry_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A registry part that cannot be read (a folder where a file should be, a CSV that is not
    UTF-8) is refused with its path, exit 2, and nothing is imported."""
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    reg = tmp_path / "registry"
    (reg / "ponds.yaml").mkdir(parents=True)
    assert main(["import", str(reg), "--database", db]) == 2
    err = capsys.readouterr().err
    assert "ponds.yaml: field file: cannot read" in err and "Traceback" not in err
    (reg / "ponds.yaml").rmdir()
    (reg / "people.csv").write_bytes(b"id,name,role\nguo,\xb9\xf9\xd3\xc2,constable\n")  # GBK
    assert main(["import", str(reg), "--database", db]) == 2
    assert "people.csv: field file: cannot read" in capsys.readouterr().err


def test_bad_user_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """adduser with a short password or an unknown role: the reason, exit 2."""
    cfg = tmp_path / "server.yaml"
    cfg.write_text(f"environment: dev\nsecret_key: {SECRET}\n"
                   f"database: sqlite:///{tmp_path / 'cli.db'}\n", encoding="utf-8")
    monkeypatch.setenv("PONDWATCH_PASSWORD", "short")
    assert main(["adduser", str(cfg), "admin"]) == 2
    assert "at least 12 characters for an admin" in capsys.readouterr().err
    monkeypatch.setenv("PONDWATCH_PASSWORD", "eleven-char")  # enough for others, not an admin
    assert main(["adduser", str(cfg), "admin"]) == 2
    assert "at least 12 characters for an admin" in capsys.readouterr().err
    monkeypatch.setenv("PONDWATCH_PASSWORD", "long-enough-1")
    assert main(["adduser", str(cfg), "wang", "--role", "wizard"]) == 2
    assert "role must be one of" in capsys.readouterr().err
    assert main(["adduser", str(cfg), "wang", "--role", "admin"]) == 0


# uvicorn ends its own thread with sys.exit(3) when it cannot bind; the runner notices.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_listener_that_cannot_bind_is_a_server_error(tmp_path: Path) -> None:
    """HTTP on a port already taken: ListenError (a ServerError and a RuntimeError)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = parse_config({"environment": "dev", "secret_key": SECRET,
                            "database": f"sqlite:///{tmp_path / 'srv.db'}",
                            "mqtt": {"url": "mqtt://127.0.0.1:1"},
                            "http": {"bind": f"127.0.0.1:{port}"}})
        with pytest.raises(ListenError, match=f"did not start on 127.0.0.1:{port}") as got:
            Server(cfg).start(timeout=10)
    assert isinstance(got.value, ServerError) and isinstance(got.value, RuntimeError)
