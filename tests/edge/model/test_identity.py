"""What a node reports about its model: manifest name, format and sha256, in the heartbeat."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge.config import NodeConfig
from edge.manifest import model_format
from edge.model.store import describe
from edge.ops.heartbeat import HealthCollector
from protocol.digest import tree_sha256
from protocol.payloads import Health, PayloadError, decode, encode

OFFLINE_SHA = "5f6f620d0fa574ed80d8348bb8d46060148eb0ba24e3eea00d31a30cdadba41d"


def test_describe_pt_symlink_and_exports(tmp_path: Path, model_path: Path) -> None:
    """person.pt -> person-offline.pt is person-offline; export folders keep the base name."""
    d = tmp_path / "models"
    d.mkdir()
    shutil.copyfile(model_path, d / "person-offline.pt")
    (d / "person.pt").symlink_to("person-offline.pt")
    ident = describe(d / "person.pt")
    assert (ident.name, ident.format, ident.sha256) == ("person-offline", "pytorch", OFFLINE_SHA)
    ncnn = d / "person-offline_ncnn_model"
    ncnn.mkdir()
    (ncnn / "model.ncnn.bin").write_bytes(b"weights")
    (ncnn / "model.ncnn.param").write_text("graph")
    first = describe(ncnn)
    assert (first.name, first.format) == ("person-offline", "ncnn")
    (ncnn / "model.ncnn.param").write_text("other graph")
    assert tree_sha256(ncnn) != first.sha256
    assert model_format("m_openvino_model") == "openvino" and model_format("m.onnx") == "onnx"
    (d / "mine.pt").write_bytes(b"not in the manifest")
    assert describe(d / "mine.pt").name is None


def test_heartbeat_carries_model_identity(tmp_path: Path) -> None:
    """set_model's name, format and sha256 go on the wire; a malformed digest is refused."""
    cfg = NodeConfig.model_validate({
        "node_id": "n-01", "pond_id": "p", "camera": {"source": "x.mp4"},
        "zones": {"water": [[0, 0], [1, 0], [1, 1]]}, "outbox": str(tmp_path / "o.db")})
    h = HealthCollector(cfg, str(tmp_path / "none.yaml"), "person.pt", vcgencmd=None)
    h.set_model("person-offline", "ncnn", OFFLINE_SHA)
    hb = decode(Health, encode(h.collect({})))
    assert (hb.model, hb.model_format, hb.model_sha256) == ("person-offline", "ncnn",
                                                            OFFLINE_SHA)
    raw = encode(hb).replace(OFFLINE_SHA.encode(), b"xyz")
    with pytest.raises(PayloadError, match="model_sha256"):
        decode(Health, raw)
