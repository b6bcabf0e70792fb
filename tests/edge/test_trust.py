"""edge.trust: a node loads only pinned or signed models, and refuses the rest before any
unpickling (a booby-trapped .pt never runs), naming why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge.config import ModelConfig
from edge.trust import ModelTrustError, check_model, write_record
from edge.vision.detector import DetectorError, load_detector
from protocol import signing
from tests.signed import make_key, sign, trapped_pt


def _cfg(path: Path, *keys: str) -> ModelConfig:
    return ModelConfig(path=str(path), labels={"person": ["Normal", "Fall"]},
                       trusted_keys=list(keys))


def test_pinned_model_loads_without_keys(model_path: Path, tmp_path: Path) -> None:
    """person-offline's sha256 is pinned by the shipped manifest: trusted under any name."""
    copy = tmp_path / "renamed.pt"
    shutil.copyfile(model_path, copy)
    verdict = check_model(copy, _cfg(copy))
    assert verdict.how == "pinned" and verdict.name == "person-offline"


def test_trapped_pt_is_refused_before_unpickling(tmp_path: Path) -> None:
    """An unsigned .pt whose unpickling would touch a marker: refused by the trust check and
    by the detector, and the marker never appears."""
    marker = tmp_path / "pwned"
    evil = trapped_pt(tmp_path / "evil.pt", marker)
    with pytest.raises(ModelTrustError, match="neither pinned .* nor signed"):
        check_model(evil, _cfg(evil))
    with pytest.raises(DetectorError, match="refused before loading"):
        load_detector(_cfg(evil))
    assert not marker.exists()


def test_signature_by_an_untrusted_key_or_for_another_file(tmp_path: Path) -> None:
    """Signed by a key the node does not list, or a signature of another file: refused."""
    marker = tmp_path / "pwned"
    evil = trapped_pt(tmp_path / "evil.pt", marker)
    attacker, _ = make_key(tmp_path / "attacker")
    _, county_pub = make_key(tmp_path / "county")
    sign(evil, attacker, "evil")
    with pytest.raises(ModelTrustError, match="not trusted here"):
        check_model(evil, _cfg(evil, county_pub))
    with pytest.raises(DetectorError, match="not trusted here"):
        load_detector(_cfg(evil, county_pub))
    other = tmp_path / "other.pt"
    other.write_bytes(b"another file")
    county_key = tmp_path / "county" / "county.key"
    shutil.copyfile(sign(other, county_key, "other"), signing.sig_path(evil))
    with pytest.raises(ModelTrustError, match="signs"):
        check_model(evil, _cfg(evil, county_pub))
    assert not marker.exists()


def test_changed_entry_breaks_the_signature(tmp_path: Path) -> None:
    """Raising the signed eval figures after signing breaks the signature."""
    key, pub = make_key(tmp_path)
    model = tmp_path / "m.pt"
    model.write_bytes(b"weights")
    sig = sign(model, key, "m", {"eval": {"water-people-valid": {"recall": 0.5}}})
    verdict = check_model(model, _cfg(model, pub))
    assert verdict.how == "signed" and verdict.entry is not None
    assert verdict.entry["eval"]["water-people-valid"]["recall"] == 0.5
    doc = json.loads(sig.read_text())
    doc["payload"] = doc["payload"].replace('"recall": 0.5', '"recall": 0.95')
    sig.write_text(json.dumps(doc))
    with pytest.raises(ModelTrustError, match="does not match its payload"):
        check_model(model, _cfg(model, pub))


def test_signed_model_through_a_symlink_and_key_file(tmp_path: Path) -> None:
    """person.pt -> NAME.pt finds NAME.pt.sig; a key listed as a .pub file works."""
    key, _ = make_key(tmp_path)
    model = tmp_path / "v2.pt"
    model.write_bytes(b"weights v2")
    sign(model, key, "v2")
    (tmp_path / "person.pt").symlink_to("v2.pt")
    verdict = check_model(tmp_path / "person.pt", _cfg(tmp_path / "person.pt",
                                                       f"{key}.pub"))
    assert verdict.how == "signed" and verdict.name == "v2"
    with pytest.raises(ModelTrustError, match="trusted_keys"):
        check_model(model, _cfg(model, str(tmp_path / "missing.pub")))


def test_export_needs_its_trust_record(tmp_path: Path, model_path: Path) -> None:
    """An export loads only with the record written when it was made here, and only while
    its files are unchanged."""
    export = tmp_path / "m_ncnn_model"
    export.mkdir()
    (export / "model.ncnn.bin").write_bytes(b"bin")
    with pytest.raises(ModelTrustError, match="no trust record"):
        check_model(export, _cfg(export))
    source = check_model(model_path, _cfg(model_path))
    write_record(export, source)
    assert check_model(export, _cfg(export)).how == "export"
    (export / "model.ncnn.bin").write_bytes(b"changed")
    with pytest.raises(ModelTrustError, match="changed since it was exported"):
        check_model(export, _cfg(export))


def test_keygen_never_overwrites_and_is_private(tmp_path: Path) -> None:
    """The private key is mode 0600 and never overwritten."""
    key, pub = make_key(tmp_path)
    assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "county.key.pub").read_text().startswith(pub)
    with pytest.raises(signing.SignatureError, match="never overwritten"):
        signing.generate(key)


def test_node_config_lists_keys_relative_to_itself(tmp_path: Path) -> None:
    """model.trusted_keys paths are taken from the config's folder; a signed model loads
    through the detector's check with them, and a bad key is named."""
    import yaml

    from edge.config import load_config

    key, _ = make_key(tmp_path / "keys")
    model = tmp_path / "m.pt"
    model.write_bytes(b"weights")
    sign(model, key, "m")
    cfg_file = tmp_path / "node.yaml"
    cfg_file.write_text(yaml.safe_dump({
        "node_id": "n-01", "pond_id": "p", "camera": {"source": "x.mp4"},
        "model": {"path": "m.pt", "trusted_keys": ["keys/county.key.pub"]},
        "zones": {"water": [[0, 0], [1, 0], [1, 1]]}}))
    cfg = load_config(cfg_file)
    assert cfg.model.trusted_keys == [str(tmp_path / "keys" / "county.key.pub")]
    assert check_model(cfg.model.path, cfg.model).how == "signed"
    bad = cfg.model.model_copy(update={"trusted_keys": ["ed25519:not-a-key"]})
    with pytest.raises(ModelTrustError, match="model.trusted_keys: trusted key ed25519:"):
        check_model(bad.path, bad)


def test_a_signed_operating_point_is_the_nodes_default(tmp_path: Path) -> None:
    """A node config without model.conf runs a signed model at the operating point its signed
    entry gives; without a trusted signature, at the default."""
    import yaml

    from edge.config import DEFAULT_CONF, load_config

    key, pub = make_key(tmp_path / "keys")
    model = tmp_path / "v2.pt"
    model.write_bytes(b"weights v2")
    sign(model, key, "v2", {"operating_conf": 0.2})
    raw = {"node_id": "n-01", "pond_id": "p", "camera": {"source": "x.mp4"},
           "model": {"path": "v2.pt", "trusted_keys": [pub]},
           "zones": {"water": [[0, 0], [1, 0], [1, 1]]}}
    cfg_file = tmp_path / "node.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    assert load_config(cfg_file).model.conf == 0.2
    raw["model"]["trusted_keys"] = []
    cfg_file.write_text(yaml.safe_dump(raw))
    assert load_config(cfg_file).model.conf == DEFAULT_CONF
    raw["model"].update(trusted_keys=[pub], conf=0.4)
    cfg_file.write_text(yaml.safe_dump(raw))
    assert load_config(cfg_file).model.conf == 0.4  # the config's own word wins
