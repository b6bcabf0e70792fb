"""Model signing for tests: a county key made for the test, signed models, and a booby-trapped
`.pt` whose unpickling would touch a marker file (what edge.trust must never let load)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from protocol import signing
from protocol.digest import sha256_file


def make_key(folder: Path, name: str = "county") -> tuple[Path, str]:
    """A new model key in folder: (private key path, `ed25519:BASE64` public text)."""
    folder.mkdir(parents=True, exist_ok=True)
    priv = folder / f"{name}.key"
    return priv, signing.public_text(signing.generate(priv))


def sign(model: Path, key: Path, name: str, entry: dict[str, Any] | None = None) -> Path:
    """Write MODEL.sig: model's digest and entry (default: labels only) signed with key."""
    digest = sha256_file(model)
    body = {"labels": {"person": ["Normal", "Fall"]}, **(entry or {}), "sha256": digest}
    doc = signing.sign(signing.load_private(key), name, digest, model.stat().st_size, body)
    out = signing.sig_path(model)
    out.write_text(doc.model_dump_json())
    return out


class _Trap:
    """Pickles as a call to os.system: loading the file runs the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


def trapped_pt(path: Path, marker: Path) -> Path:
    """A torch checkpoint whose unpickling touches marker (as torch.load in Ultralytics
    does with any .pt it is given)."""
    import torch

    torch.save({"model": _Trap(f"touch {marker}")}, path)
    return path
