"""Signed models: the county's Ed25519 model key and the `NAME.pt.sig` document both sides check.

A signature covers the exact bytes of a JSON payload naming the model, the sha256 and size of
its file and its whole manifest entry (classes, labels, operating point, eval figures), so the
node loads only what the key holder signed and the server's gate reads only the signer's
figures. The payload travels as text inside the document: nothing is re-serialised to verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import Field, ValidationError

from protocol.validation import StrictModel

SIG_SUFFIX = ".sig"  # NAME.pt.sig beside NAME.pt
SIG_FORMAT = "pondwatch-model-signature/1"
PAYLOAD_KIND = "pondwatch-model"
KEY_PREFIX = "ed25519:"
MAX_SIG_BYTES = 32 * 1024  # a document with a full manifest entry is about 3 KB
MAX_TRUSTED_KEYS = 8


class SignatureError(ValueError):
    """A key or signature that cannot be read, or a signature that does not hold."""


class SignatureDoc(StrictModel):
    """The `NAME.pt.sig` document: who signed, the signed payload text, the signature."""

    format: str = Field(pattern=f"^{SIG_FORMAT}$", description="Document format.")
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$", description="Id of the signing key.")
    payload: str = Field(max_length=MAX_SIG_BYTES, description="The signed JSON text.")
    signature: str = Field(max_length=200, description="Ed25519 signature, base64.")


class SignedModel(StrictModel):
    """What a valid signature vouches for."""

    kind: str = Field(pattern=f"^{PAYLOAD_KIND}$", description="Domain of the signature.")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description="Model name.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the model file.")
    size: int = Field(gt=0, description="Size of the model file in bytes.")
    entry: dict[str, Any] = Field(description="The model's manifest entry as signed.")
    signed_at: str = Field(description="When it was signed (ISO 8601 UTC).")
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$", description="Id of the signing key.")


def key_id(key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the sha256 of the raw public key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_text(key: Ed25519PublicKey) -> str:
    """A public key as one line: `ed25519:BASE64` (what configs list)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KEY_PREFIX + base64.b64encode(raw).decode()


def parse_public(text: str) -> Ed25519PublicKey:
    """An `ed25519:BASE64` (or bare base64) public key; SignatureError when it is not one."""
    value = text.strip().split()[0] if text.strip() else ""
    value = value.removeprefix(KEY_PREFIX)
    try:
        raw = base64.b64decode(value, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"not an Ed25519 public key ({KEY_PREFIX}BASE64 of 32 bytes)"
                             ) from exc


def trusted_keys(items: Iterable[str]) -> dict[str, Ed25519PublicKey]:
    """Key id -> key for each item: `ed25519:BASE64`, or the path of a `.pub` file holding
    one; SignatureError naming the item that is neither."""
    out: dict[str, Ed25519PublicKey] = {}
    for item in items:
        text = item
        if not item.startswith(KEY_PREFIX):
            try:
                text = Path(item).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise SignatureError(f"trusted key {item}: cannot read: {exc}") from exc
        try:
            key = parse_public(text)
        except SignatureError as exc:
            raise SignatureError(f"trusted key {item}: {exc}") from exc
        out[key_id(key)] = key
    return out


def generate(private_path: str | Path) -> Ed25519PublicKey:
    """Write a new private key (PEM, mode 0600, never overwriting) and PATH.pub; the public
    key."""
    path = Path(private_path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise SignatureError(f"{path} exists; a signing key is never overwritten") from exc
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub = key.public_key()
    Path(f"{path}.pub").write_text(f"{public_text(pub)} pondwatch-model-key {key_id(pub)}\n")
    return pub


def load_private(path: str | Path) -> Ed25519PrivateKey:
    """The private key of `model keygen`; SignatureError when unreadable or another kind."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SignatureError(f"{path}: not a readable PondWatch model key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path}: not an Ed25519 key")
    return key


def sign(key: Ed25519PrivateKey, name: str, sha256: str, size: int,
         entry: dict[str, Any], now: datetime | None = None) -> SignatureDoc:
    """The signature document of a model file (its digest and size) and its manifest entry."""
    kid = key_id(key.public_key())
    signed = SignedModel(kind=PAYLOAD_KIND, name=name, sha256=sha256, size=size, entry=entry,
                         signed_at=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
                         key_id=kid)
    payload = json.dumps(signed.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    sig = base64.b64encode(key.sign(payload.encode("utf-8"))).decode()
    return SignatureDoc(format=SIG_FORMAT, key_id=kid, payload=payload, signature=sig)


def parse_doc(raw: bytes | str | dict[str, Any]) -> SignatureDoc:
    """A signature document from its JSON (bytes, text or parsed); SignatureError if malformed."""
    if isinstance(raw, bytes | str) and len(raw) > MAX_SIG_BYTES:
        raise SignatureError(f"signature document over {MAX_SIG_BYTES} bytes")
    try:
        data = json.loads(raw) if isinstance(raw, bytes | str) else raw
        return SignatureDoc.model_validate(data)
    except (ValueError, ValidationError) as exc:
        raise SignatureError(f"not a PondWatch model signature: {exc}") from exc


def read_doc(path: str | Path) -> SignatureDoc:
    """The signature document stored at path."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_SIG_BYTES:
            raise SignatureError(f"{p}: over {MAX_SIG_BYTES} bytes")
        return parse_doc(p.read_bytes())
    except OSError as exc:
        raise SignatureError(f"{p}: cannot read: {exc.strerror or exc}") from exc


def verify(doc: SignatureDoc, keys: dict[str, Ed25519PublicKey]) -> SignedModel:
    """What doc vouches for, when a key of keys signed it; SignatureError naming why not."""
    key = keys.get(doc.key_id)
    if key is None:
        known = ", ".join(sorted(keys)) or "none configured"
        raise SignatureError(f"signed by key {doc.key_id}, which is not trusted here "
                             f"(trusted: {known})")
    try:
        key.verify(base64.b64decode(doc.signature, validate=True), doc.payload.encode("utf-8"))
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise SignatureError(f"the signature by key {doc.key_id} does not match its payload "
                             "(the entry or digest was changed after signing)") from exc
    try:
        signed = SignedModel.model_validate(json.loads(doc.payload))
    except (ValueError, ValidationError) as exc:
        raise SignatureError(f"signed payload is malformed: {exc}") from exc
    if signed.key_id != doc.key_id:
        raise SignatureError("signed payload names another key than its document")
    if signed.entry.get("sha256") not in (None, signed.sha256):
        raise SignatureError("signed entry names another sha256 than the signed file")
    return signed


def sig_path(model: str | Path) -> Path:
    """Where the signature of a model file lives: NAME.pt.sig beside NAME.pt."""
    p = Path(model)
    return p.with_name(p.name + SIG_SUFFIX)
