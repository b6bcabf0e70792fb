"""Where the models and their manifest are found: the node config, $PONDWATCH_MODELS, an install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from edge.config import NodeConfig
from edge.manifest import (
    CHECKOUT_MODELS,
    MODELS_ENV,
    SHIPPED_MANIFEST,
    find_model,
    manifest_path,
    models_dir,
)
from edge.model.store import describe
from protocol.digest import sha256_file

ROOT = Path(__file__).resolve().parents[2]


def _own_models(folder: Path) -> Path:
    """A models folder with one model of its own and the manifest that lists it."""
    folder.mkdir(parents=True)
    weights = folder / "mine.pt"
    weights.write_bytes(b"weights trained on this pond")
    (folder / "manifest.yaml").write_text(yaml.safe_dump({"models": {"mine": {
        "file": "mine.pt", "source": {"kind": "local"}, "licence": "Apache-2.0",
        "sha256": sha256_file(weights), "classes": {0: "person"},
        "labels": {"person": ["person"]}, "operating_conf": 0.3}}}))
    return weights


def test_models_dir_from_the_environment_else_the_checkout(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """$PONDWATCH_MODELS wins; in a source checkout the default is its models/."""
    monkeypatch.delenv(MODELS_ENV, raising=False)
    assert models_dir() == CHECKOUT_MODELS == ROOT / "models"
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    assert models_dir() == tmp_path


def test_manifest_of_a_folder_else_the_shipped_one(tmp_path: Path) -> None:
    """A folder's own manifest.yaml, else the package's (the file, never the link to it)."""
    assert manifest_path(tmp_path) == SHIPPED_MANIFEST.resolve()
    assert SHIPPED_MANIFEST.resolve() == (ROOT / "models" / "manifest.yaml").resolve()
    _own_models(tmp_path / "m")
    assert manifest_path(tmp_path / "m") == tmp_path / "m" / "manifest.yaml"


def test_a_node_names_its_model_from_the_manifest_beside_it(
        make_cfg: Callable[..., NodeConfig], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """The heartbeat's model name comes from the folder of the config's model.path, not from
    the checkout (which an installed node does not have)."""
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "elsewhere"))
    weights = _own_models(tmp_path / "node-models")
    cfg = make_cfg(model={"path": str(weights)})
    ident = describe(cfg.model.path)
    assert (ident.name, ident.format, ident.sha256) == ("mine", "pytorch", sha256_file(weights))
    found = find_model(cfg.model.path)
    assert found is not None and found[1].operating_conf == 0.3


def test_unlisted_model_has_no_name(tmp_path: Path) -> None:
    """A file no manifest lists is reported by its file name (describe's name is None)."""
    weights = tmp_path / "stray.pt"
    weights.write_bytes(b"nobody knows this one")
    assert find_model(weights) is None and describe(weights).name is None


def test_installed_wheel_lists_the_models_outside_the_checkout(tmp_path: Path) -> None:
    """pip's wheel of the repo, installed on its own, runs `model list` from another folder:
    the manifest ships with the package; $PONDWATCH_MODELS names the weights folder."""
    src = tmp_path / "src"   # a copy: a stale build/ in the checkout must not reach the wheel
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "var", "build", "*.egg-info", "__pycache__", "tests", "bench", "docs",
        "*.pt", "*_model"))
    wheels, target, away = tmp_path / "wheels", tmp_path / "site", tmp_path / "away"
    away.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(src)], check=True, capture_output=True, timeout=300)
    [wheel] = wheels.glob("pondwatch-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k != MODELS_ENV}
    env["PYTHONPATH"] = str(target)

    def edge(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *args], cwd=away, env={**env, **extra},
                              capture_output=True, text=True, timeout=120)

    where = edge("-c", "import edge.manifest as m; print(m.__file__)")
    assert where.stdout.strip() == str(target / "edge" / "manifest.py"), where.stderr
    listed = edge("-m", "edge.cli", "model", "list")
    assert listed.returncode == 0, listed.stderr
    for name in ("person-offline", "pond-person-v1", "yolo11n"):
        assert name in listed.stdout
    _own_models(tmp_path / "node-models")
    own = edge("-m", "edge.cli", "model", "list", PONDWATCH_MODELS=str(tmp_path / "node-models"))
    assert own.returncode == 0, own.stderr
    assert [line.split()[:2] for line in own.stdout.splitlines()[1:]] == [["mine", "ok"]]
