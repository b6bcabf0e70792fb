"""Which model files a node may load: pinned by PondWatch's own manifest, or signed by a key the
node trusts, or an export this node made from such a model. Checked before anything unpickles.

A `.pt` is a pickle: loading one runs whatever code it carries. So every loader (the detector,
`model_update`, replay, eval, export, train) calls check_model first, and a file that is
neither pinned nor signed never reaches torch. Below edge.config so the config's own look-ups
may use it; above edge.manifest, whose shipped copy is the trust root.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.errors import EdgeError
from edge.manifest import SHIPPED_MANIFEST, ModelStoreError, load_manifest, model_format
from protocol import signing
from protocol.digest import tree_sha256

log = logging.getLogger(__name__)

RECORD_SUFFIX = ".trust.json"  # beside an export: NAME_ncnn_model.trust.json, NAME.onnx.trust…
How = Literal["pinned", "signed", "export"]


class ModelTrustError(EdgeError, ValueError):
    """A model file refused before loading; the message says which file and why."""


class TrustSettings(Protocol):
    """What check_model needs from a config: the node's ModelConfig has it."""

    @property
    def trusted_keys(self) -> Sequence[str]:
        """Public model keys: `ed25519:BASE64` or paths of `.pub` files."""
        ...


@dataclass(frozen=True)
class TrustVerdict:
    """Why a model file may be loaded."""

    how: How
    path: Path
    sha256: str
    name: str | None = None
    key_id: str | None = None
    entry: dict[str, Any] | None = field(default=None, compare=False)

    def as_json(self) -> dict[str, Any]:
        """The verdict as JSON (an export's trust record holds its source's)."""
        return {"how": self.how, "path": str(self.path), "sha256": self.sha256,
                "name": self.name, "key_id": self.key_id}


def pinned() -> dict[str, str]:
    """sha256 -> name of every model pinned by the manifest shipped with this package."""
    try:
        man = load_manifest(SHIPPED_MANIFEST.resolve())
    except ModelStoreError as exc:  # a broken package pins nothing
        log.error("shipped manifest unreadable, no model is pinned: %s", exc)
        return {}
    return {e.sha256: n for n, e in man.models.items() if e.sha256}


def keys_of(cfg: TrustSettings) -> dict[str, Ed25519PublicKey]:
    """The config's trusted keys by key id; ModelTrustError naming a bad one."""
    try:
        return signing.trusted_keys(cfg.trusted_keys)
    except signing.SignatureError as exc:
        raise ModelTrustError(f"model.trusted_keys: {exc}") from exc


def check_signature(path: Path, digest: str, cfg: TrustSettings) -> TrustVerdict:
    """The verdict of NAME.sig beside path (or beside the file a link points at)."""
    candidates = dict.fromkeys((signing.sig_path(path), signing.sig_path(path.resolve())))
    sig = next((c for c in candidates if c.is_file()), None)
    if sig is None:
        raise ModelTrustError(
            f"model {path} (sha256 {digest[:12]}…) is neither pinned by PondWatch's own "
            f"manifest nor signed (no {signing.sig_path(path).name}); refused before loading. "
            "Sign it with `pondwatch-edge model sign` and the county's model key")
    try:
        signed = signing.verify(signing.read_doc(sig), keys_of(cfg))
    except signing.SignatureError as exc:
        raise ModelTrustError(f"model {path}: {sig.name}: {exc}; refused before loading"
                              ) from exc
    if signed.sha256 != digest:
        raise ModelTrustError(
            f"model {path}: its sha256 is {digest}, {sig.name} signs {signed.sha256}; refused "
            "before loading")
    return TrustVerdict("signed", path, digest, signed.name, signed.key_id, signed.entry)


def record_path(export: str | Path) -> Path:
    """The trust record of an export: EXPORT.trust.json beside it."""
    p = Path(export)
    return p.with_name(p.name + RECORD_SUFFIX)


def write_record(export: str | Path, source: TrustVerdict) -> Path:
    """Record that this node made export from a trusted model (its digest and its source's
    verdict), so check_model accepts it."""
    out = record_path(export)
    tmp = out.with_name(out.name + ".new")
    tmp.write_text(json.dumps({"sha256": tree_sha256(export), "source": source.as_json()},
                              indent=1))
    os.replace(tmp, out)
    return out


def check_record(path: Path, digest: str) -> TrustVerdict:
    """The verdict of an export's trust record; ModelTrustError when absent or stale."""
    rec = record_path(path)
    try:
        data = json.loads(rec.read_text(encoding="utf-8"))
        recorded, source = str(data["sha256"]), dict(data["source"])
    except FileNotFoundError as exc:
        raise ModelTrustError(
            f"export {path} has no trust record ({rec.name}); export it on this node with "
            "`pondwatch-edge model export` from a pinned or signed model") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelTrustError(f"export {path}: trust record {rec.name} unreadable: {exc}"
                              ) from exc
    if recorded != digest:
        raise ModelTrustError(
            f"export {path} changed since it was exported (sha256 {digest[:12]}…, recorded "
            f"{recorded[:12]}…); refused before loading")
    return TrustVerdict("export", path, digest, source.get("name"), source.get("key_id"))


def check_model(path: str | Path, cfg: TrustSettings) -> TrustVerdict:
    """Why the model at path may be loaded; ModelTrustError naming why not.

    A `.pt` (or any other single file) must be pinned by the shipped manifest or signed by a
    key of cfg.trusted_keys; an export (ONNX, OpenVINO, NCNN, …) must match the trust record
    this node wrote when it exported it from such a model.
    """
    p = Path(path)
    if not p.exists():
        raise ModelTrustError(f"model file not found: {p}")
    digest = tree_sha256(p)
    if model_format(p) != "pytorch":
        return check_record(p, digest)
    name = pinned().get(digest) if p.is_file() else None
    if name is not None:
        return TrustVerdict("pinned", p, digest, name)
    return check_signature(p, digest, cfg)


def signed_operating_conf(path: str | Path, cfg: TrustSettings) -> float | None:
    """The operating point the signature beside a .pt vouches for (its signed entry's
    operating_conf), when a trusted key signed this very file; else None."""
    p = Path(path)
    if not p.is_file() or model_format(p) != "pytorch":
        return None
    if not any(signing.sig_path(x).is_file() for x in (p, p.resolve())):
        return None  # unsigned: nothing to hash
    try:
        verdict = check_signature(p, tree_sha256(p), cfg)
    except ModelTrustError:
        return None
    conf = (verdict.entry or {}).get("operating_conf")
    return float(conf) if isinstance(conf, int | float) and 0 < conf < 1 else None
