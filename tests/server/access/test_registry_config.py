"""Registry import (YAML, CSV, folder; errors name file, line, field; all or nothing) and config."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from server.access import registry
from server.access.registry import RegistryError
from server.cli import main
from server.core.config import ConfigError, load_config, parse_config
from server.core.db import Grid, Person, Pond, RosterEntry, make_engine, make_sessions
from server.core.migrate import upgrade
from tests.server.conftest import PageReceiver, registry_text


@pytest.fixture
def sessions(tmp_path: Path):
    eng = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    upgrade(eng)
    yield make_sessions(eng)
    eng.dispose()


def _count(sessions, model) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_yaml_import_and_reimport_is_idempotent(tmp_path: Path, sessions,
                                                 receiver: PageReceiver) -> None:
    f = tmp_path / "registry.yaml"
    f.write_text(registry_text(receiver), encoding="utf-8")
    counts = registry.import_file(sessions, f)
    assert counts["ponds"] == 3 and counts["people"] == 5
    registry.import_file(sessions, f)
    assert _count(sessions, Pond) == 3
    with sessions() as s:
        assert s.get(Pond, "heyuan-shantang").village == "禾源村"
        assert s.get(Grid, "gongyu").constable_id == "guo-yong"


@pytest.mark.parametrize(("text", "line", "field"), [
    ("ponds:\n  - {id: p1, name: P, grid: nowhere}\n", 2, "ponds.grid"),
    ("people:\n  - {id: a, name: A, role: constable}\n  - {id: b, name: B, role: chef}\n",
     3, "people.role"),
    ("people:\n  - {id: a, name: A, role: constable, notify: [not-a-url]}\n", 2, "people.notify"),
    ("people:\n  - {id: a, name: A, role: constable, notify: ['dingtalk://t/', 'sms://x']}\n",
     2, "people.notify"),
    ("people:\n  - {id: a, name: A, role: constable, colour: red}\n", 2, "people.colour"),
    ("ponds:\n  - {id: p1, name: P, grid: g, lat: 123}\n", 2, "ponds.lat"),
    ("nodes:\n  - {id: Bad_Node, pond: p}\n", 2, "nodes.id"),
    ("nodes:\n  - {id: pondwatch-server, pond: p}\n", 2, "nodes.id"),  # the server's account
    ("nodes:\n  - {id: pondwatch, pond: p}\n", 2, "nodes.id"),
    ("lakes: []\n", 1, "lakes"),
    ("rosters:\n  - {grid: g, person: a, role: primary, starts: 2026-07-01T08:00:00,"
     " ends: 2026-07-02T08:00:00+08:00}\n", 2, "rosters.starts"),
    ("people:\n  - {id: a, name: A, role: constable}\n  - {id: a, name: A2, role: constable}\n",
     3, "people.id"),
    ("stations:\n  - {id: s1, name: S}\npeople:\n"
     "  - {id: a, name: A, role: constable, stations: [s1]}\n", 4, "people.stations"),
    ("people:\n  - {id: t, name: T, role: technician, stations: [nowhere]}\n", 2,
     "people.stations"),
])
def test_yaml_errors_name_file_line_field_and_import_nothing(
        tmp_path: Path, sessions, text: str, line: int, field: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(RegistryError) as err:
        registry.import_file(sessions, f)
    assert err.value.file == str(f) and err.value.line == line
    assert err.value.field.startswith(field), err.value.field
    assert f"{f}:{line}" in str(err.value)
    assert _count(sessions, Person) == 0


def test_late_error_leaves_database_untouched(tmp_path: Path, sessions) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("people:\n  - {id: a, name: A, role: constable}\n"
                 "stations:\n  - {id: s1, name: S}\n"
                 "grids:\n  - {id: g, name: G, station: s1, constable: ghost}\n", encoding="utf-8")
    with pytest.raises(RegistryError, match=r"r.yaml:6: field grids.constable: unknown person"):
        registry.import_file(sessions, f)
    assert _count(sessions, Person) == 0


def test_bad_yaml_syntax_names_line(tmp_path: Path, sessions) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("people:\n  - {id: a, name: [oops\n", encoding="utf-8")
    with pytest.raises(RegistryError) as err:
        registry.import_file(sessions, f)
    assert err.value.line is not None and err.value.field == "yaml"


def test_csv_folder_import_with_rosters(tmp_path: Path, sessions) -> None:
    d = tmp_path / "reg"
    d.mkdir()
    (d / "people.csv").write_text("id,name,role,phone,notify,stations\n"
                                  "guo,郭勇,constable,+8613800000000,json://127.0.0.1:9/a;"
                                  "mailto://127.0.0.1:25?to=a@example.com&from=pw@example.com"
                                  "&mode=insecure,\nkang,康,constable,,,\n"
                                  "wang,王工,technician,,,qj; bs\n",
                                  encoding="utf-8")
    (d / "stations.csv").write_text("id,name,duty_desk,area_officers\nqj,泉江,,guo\n"
                                    "bs,北山,,\n", encoding="utf-8")
    (d / "grids.csv").write_text("id,name,station,constable,backup\ngy,共裕,qj,guo,kang\n",
                                 encoding="utf-8")
    (d / "rosters.csv").write_text("grid,person,role,starts,ends\n"
                                   "gy,kang,primary,2026-07-01T00:00:00+08:00,"
                                   "2026-07-08T00:00:00+08:00\n", encoding="utf-8")
    counts = registry.import_file(sessions, d)
    assert counts["people"] == 3 and counts["rosters"] == 1
    with sessions() as s:
        assert len(s.get(Person, "guo").notify) == 2
        assert s.get(Person, "wang").stations == ["qj", "bs"]
        assert s.get(Person, "guo").stations == []
        assert s.scalars(select(RosterEntry)).one().person_id == "kang"


def test_csv_error_names_line_and_field(tmp_path: Path, sessions) -> None:
    f = tmp_path / "people.csv"
    f.write_text("id,name,role\na,A,constable\nb,B,constable\nc,C,wizard\n", encoding="utf-8")
    with pytest.raises(RegistryError, match=r"people.csv:4: field people.role"):
        registry.import_file(sessions, f)
    assert _count(sessions, Person) == 0
    g = tmp_path / "lakes.csv"
    g.write_text("id\nx\n", encoding="utf-8")
    with pytest.raises(RegistryError, match=r"lakes.csv:2: field kind"):
        registry.import_file(sessions, g)


def test_cli_import(tmp_path: Path, receiver: PageReceiver, capsys) -> None:
    f = tmp_path / "registry.yaml"
    f.write_text(registry_text(receiver), encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["import", str(f), "--database", db]) == 0
    assert "ponds 3" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("ponds:\n  - {id: p, name: P, grid: nope}\n", encoding="utf-8")
    assert main(["import", str(bad), "--database", db]) == 2
    assert "bad.yaml:2: field ponds.grid" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "missing.yaml"), "--database", db]) == 2


def test_config_rejects_unknown_fields_and_placeholder_secret(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("PONDWATCH_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="field mqtt.port"):
        parse_config({"mqtt": {"port": 1883}, "environment": "dev"})
    with pytest.raises(ConfigError, match="secret_key"):
        parse_config({"secret_key": "changethis"})
    with pytest.raises(ConfigError, match="secret_key"):
        parse_config({})
    parse_config({"secret_key": "changethis", "environment": "dev"})  # dev: random key
    monkeypatch.setenv("PONDWATCH_SECRET_KEY", "a-real-secret-from-the-environment")
    cfg = parse_config({})
    assert cfg.resolved_secret() == b"a-real-secret-from-the-environment"
    with pytest.raises(ConfigError, match="field http.bind"):
        parse_config({"http": {"bind": "nowhere"}})
    with pytest.raises(ConfigError, match="escalation.policies.default: .*increasing"):
        parse_config({"escalation": {"policies": {"default": {"steps": [
            {"after_s": 60, "targets": ["constable"]}, {"after_s": 0, "targets": ["backup"]}]}}}})


def test_config_file_paths_are_relative_to_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PONDWATCH_SECRET_KEY", "a-real-secret-from-the-environment")
    f = tmp_path / "server.yaml"
    f.write_text("database: sqlite:///data/server.db\nregistry: registry.yaml\n", encoding="utf-8")
    cfg = load_config(f)
    assert cfg.database == f"sqlite:///{tmp_path}/data/server.db"
    assert cfg.registry == tmp_path / "registry.yaml"
    f.write_text("database: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    assert main(["run", str(tmp_path / "absent.yaml")]) == 2


def test_cli_import_file_alone_uses_the_installed_config(
        tmp_path: Path, receiver: PageReceiver, capsys, monkeypatch) -> None:
    """`pondwatch-server import FILE` (DESIGN.md) finds server.yaml without flags."""
    f = tmp_path / "registry.yaml"
    f.write_text(registry_text(receiver), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PONDWATCH_CONFIG", raising=False)
    monkeypatch.delenv("PONDWATCH_DATABASE", raising=False)
    monkeypatch.setattr("server.cli.DEFAULT_CONFIGS", ("server.yaml",))
    assert main(["import", str(f)]) == 2
    assert "no server config found" in capsys.readouterr().err
    (tmp_path / "server.yaml").write_text(
        "environment: dev\nsecret_key: test-secret-key-0123456789\n"
        "database: sqlite:///alone.db\n", encoding="utf-8")
    assert main(["import", str(f)]) == 0
    assert "ponds 3" in capsys.readouterr().out
    assert (tmp_path / "alone.db").exists()
