"""protocol.signing: the model signature format both sides check, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol import signing


@pytest.fixture()
def key(tmp_path: Path) -> Path:
    """A fresh model key."""
    path = tmp_path / "county.key"
    signing.generate(path)
    return path


def _doc(key: Path, **entry: object) -> signing.SignatureDoc:
    return signing.sign(signing.load_private(key), "m", "a" * 64, 10,
                        {"labels": {"person": ["Normal"]}, **entry})


def test_round_trip_through_json(key: Path) -> None:
    """A document read back from its JSON verifies to what was signed."""
    doc = signing.parse_doc(_doc(key, operating_conf=0.2).model_dump_json())
    keys = signing.trusted_keys([(key.parent / "county.key.pub").read_text()])
    got = signing.verify(doc, keys)
    assert (got.name, got.sha256, got.size) == ("m", "a" * 64, 10)
    assert got.entry["operating_conf"] == 0.2 and got.key_id == doc.key_id


def test_refusals_name_why(key: Path, tmp_path: Path) -> None:
    """Another key, a changed payload, a payload naming another key or another file, a
    malformed or oversized document and a bad public key are each refused."""
    doc = _doc(key)
    pub = signing.load_private(key).public_key()
    keys = {signing.key_id(pub): pub}
    other = tmp_path / "other.key"
    signing.generate(other)
    with pytest.raises(signing.SignatureError, match="not trusted here"):
        signing.verify(_doc(other), keys)
    changed = doc.model_copy(update={"payload": doc.payload.replace('"size": 10',
                                                                    '"size": 11')})
    with pytest.raises(signing.SignatureError, match="does not match its payload"):
        signing.verify(changed, keys)
    body = json.loads(doc.payload)
    body["entry"]["sha256"] = "b" * 64  # signed, but the entry names another file
    lying = signing.sign(signing.load_private(key), "m", "a" * 64, 10, body["entry"])
    with pytest.raises(signing.SignatureError, match="another sha256"):
        signing.verify(lying, keys)
    with pytest.raises(signing.SignatureError, match="not a PondWatch model signature"):
        signing.parse_doc('{"format": "x"}')
    with pytest.raises(signing.SignatureError, match="over"):
        signing.parse_doc("x" * (signing.MAX_SIG_BYTES + 1))
    with pytest.raises(signing.SignatureError, match="not an Ed25519 public key"):
        signing.parse_public("ed25519:AAAA")
    with pytest.raises(signing.SignatureError, match="cannot read"):
        signing.trusted_keys([str(tmp_path / "missing.pub")])
    with pytest.raises(signing.SignatureError, match="not a readable"):
        signing.load_private(tmp_path / "missing.key")
