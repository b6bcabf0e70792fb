"""The one sha256 helper of both sides: files and streams hashed in 1 MiB chunks."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

CHUNK = 1 << 20


def sha256_stream(src: IO[bytes], sink: Callable[[bytes], object] | None = None) -> tuple[str, int]:
    """Hex sha256 and size of what src yields; each chunk is also handed to sink (a copy)."""
    digest = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: src.read(CHUNK), b""):
        digest.update(chunk)
        size += len(chunk)
        if sink is not None:
            sink(chunk)
    return digest.hexdigest(), size


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    with open(path, "rb") as fh:
        return sha256_stream(fh)[0]


def tree_sha256(path: str | Path) -> str:
    """sha256 of a file, or of a folder's relative file names and contents in sorted order
    (an export such as NAME_ncnn_model/)."""
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    digest = hashlib.sha256()
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        digest.update(f.relative_to(p).as_posix().encode() + b"\0")
        digest.update(bytes.fromhex(sha256_file(f)))
    return digest.hexdigest()
