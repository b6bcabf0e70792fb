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
