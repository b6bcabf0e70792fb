"""pondwatch-server's command line: exit codes and messages of its error paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.cli import main


def test_dataset_export_from_an_empty_database(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """No resolved alert with a frame yet: exit 1 saying so, and no folder written."""
    out = tmp_path / "ds"
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["dataset", "export", str(out), "--since", "2024-05-01", "--database", db]) == 1
    assert "no resolved real or false_alarm alert" in capsys.readouterr().err
    assert not out.exists()


def test_dataset_export_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad --since is 2; a folder that is not empty is 1 and keeps its files; a user who is
    not an admin is 2."""
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    out = tmp_path / "ds"
    assert main(["dataset", "export", str(out), "--since", "last week", "--database", db]) == 2
    assert "'last week' is not an ISO 8601 date" in capsys.readouterr().err
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["dataset", "export", str(out), "--since", "2024-05-01", "--database", db]) == 1
    assert "is not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    monkeypatch.setenv("PONDWATCH_PASSWORD", "whatever")
    assert main(["dataset", "export", str(tmp_path / "new"), "--since", "2024-05-01",
                 "--database", db, "--user", "nobody"]) == 2
    assert "admins only" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
