"""Ultralytics' environment is set in one place: offline, quiet, settings under the state dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.vision.offline import ultralytics_offline


def test_sets_offline_quiet_and_a_settings_folder(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    """Unset: offline, not verbose, settings under systemd's STATE_DIRECTORY."""
    for name in ("YOLO_OFFLINE", "YOLO_VERBOSE", "YOLO_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    ultralytics_offline()
    assert os.environ["YOLO_OFFLINE"] == "1"
    assert os.environ["YOLO_VERBOSE"] == "False"
    assert os.environ["YOLO_CONFIG_DIR"] == str(tmp_path / "Ultralytics")


def test_values_already_set_win(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An operator's own setting is kept."""
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("YOLO_VERBOSE", "True")
    ultralytics_offline()
    assert os.environ["YOLO_CONFIG_DIR"] == str(tmp_path / "mine")
    assert os.environ["YOLO_VERBOSE"] == "True"
