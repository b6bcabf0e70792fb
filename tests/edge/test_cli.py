"""pondwatch-edge's one error catch: every EdgeError is a message on stderr and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.camera.sources import SourceError
from edge.cli import main
from edge.config import ConfigError
from edge.errors import EdgeError
from edge.link.sms import ModemError
from edge.manifest import ModelStoreError
from edge.model.eval import DatasetError
from edge.ops.diag import CheckFailed
from edge.site.enrol import EnrolError
from edge.vision.detector import DetectorError
from edge.vision.tracking import TrackerError
from edge.warning.audio import AudioError


@pytest.mark.parametrize(("error", "builtin"), [
    (ConfigError, ValueError), (ModelStoreError, ValueError), (DatasetError, ValueError),
    (TrackerError, ValueError), (EnrolError, ValueError), (SourceError, RuntimeError),
    (DetectorError, RuntimeError), (AudioError, RuntimeError), (ModemError, RuntimeError),
    (CheckFailed, RuntimeError),
])
def test_every_edge_error_has_the_root_and_its_builtin(error: type[Exception],
                                                       builtin: type[Exception]) -> None:
    """Callers may catch EdgeError, or the builtin as before."""
    assert issubclass(error, EdgeError) and issubclass(error, builtin)


def test_bad_config_is_a_message_and_exit_2(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A config that does not validate: exit 2, the file and field named on stderr."""
    bad = tmp_path / "node.yaml"
    bad.write_text("node_id: n1\npond_id: p1\nzones: {water: [[0, 0], [1, 0]]}\n")
    assert main(["run", str(bad), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert "ConfigError" in err and str(bad) in err and "zone water needs at least 3" in err
    assert "Traceback" not in err


def test_missing_config_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Any subcommand with a config that cannot be read."""
    assert main(["diag", str(tmp_path / "none.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_model_store_error_is_a_message_and_exit_2(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A manifest that is not valid: exit 2 with the file named, not a traceback."""
    man = tmp_path / "manifest.yaml"
    man.write_text("default: auto\nmodels: {}\n")
    assert main(["model", "--manifest", str(man), "--dir", str(tmp_path), "list"]) == 2
    err = capsys.readouterr().err
    assert "ModelStoreError" in err and str(man) in err and "models" in err
