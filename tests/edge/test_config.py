"""Node config: the DESIGN.md example loads; bad configs are refused naming the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.cli import main
from edge.config import ConfigError, load_config

EXAMPLE: dict[str, Any] = yaml.safe_load("""
node_id: heyuan-01
pond_id: heyuan-shantang
camera: {source: picamera2, fps: 5}
model:
  path: models/person.pt
  imgsz: 640
  conf: 0.35
  labels: {person: [person], child: [child], lifebuoy: [lifebuoy]}
zones:
  water: [[0.0, 0.62], [1.0, 0.62], [1.0, 1.0], [0.0, 1.0]]
  bank:  [[0.0, 0.40], [1.0, 0.40], [1.0, 0.62], [0.0, 0.62]]
stature:
  references:
    - {foot: [0.50, 0.60], head: [0.50, 0.32], height_m: 1.75}
    - {foot: [0.30, 0.45], head: [0.30, 0.29], height_m: 1.75}
  child_max_m: 1.45
rules: {dwell_s: 1.0, clear_s: 10.0}
equipment:
  - {item: lifebuoy, roi: [0.05, 0.30, 0.08, 0.14], reference: refs/lifebuoy.jpg,
     missing_after_s: 600}
mqtt: {url: "mqtts://broker.example:8883", topic_prefix: pondwatch/v1}
outbox: /var/lib/pondwatch/outbox.db
gpio: {horn: 17, light: 27, status_led: 22, sos_button: 5, pir: 4}
""")


def write(tmp_path: Path, data: Any) -> Path:
    p = tmp_path / "node.yaml"
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def with_change(path: str, value: Any) -> dict[str, Any]:
    """The example with one dotted path set (value None deletes it)."""
    data = copy.deepcopy(EXAMPLE)
    *parents, last = path.split(".")
    node: Any = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return data


def test_design_example_loads_and_resolves_paths(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, EXAMPLE))
    assert cfg.node_id == "heyuan-01" and cfg.calibrated
    assert cfg.model.path == str(tmp_path / "models/person.pt")
    assert cfg.equipment[0].reference == str(tmp_path / "refs/lifebuoy.jpg")
    assert cfg.camera.source == "picamera2"


@pytest.mark.parametrize(("path", "value", "field", "words"), [
    ("node_id", "Heyuan 01", "node_id", "pattern"),
    ("node_id", "pondwatch-server", "node_id", "reserved"),  # the server's broker account
    ("snapshot_retention_days", 0, "snapshot_retention_days", "greater than 0"),
    ("pond_id", None, "pond_id", "Field required"),
    ("zones", None, "zones", "Field required"),
    ("model.conf", 1.5, "model.conf", "less than 1"),
    ("model.imgsz", 650, "model.imgsz", "multiple of 32"),
    ("camera.fps", 0, "camera.fps", "greater than 0"),
    ("camera.resolution", "1080p", "camera.resolution", "Extra inputs"),
    ("zones.water", [[0, 0], [1, 1]], "zones", "at least 3 points"),
    ("zones.bank", [[0, 0.4], [1.2, 0.4], [1, 0.6]], "zones.bank.1.0", "less than or equal to 1"),
    ("stature.references", [{"foot": [0.5, 0.6], "head": [0.5, 0.3], "height_m": 1.75}],
     "stature", "two or more"),
    ("stature.references.0.head", [0.5, 0.7], "stature.references.0", "head must be above foot"),
    ("equipment.0.roi", [0.9, 0.3, 0.2, 0.1], "equipment.0", "inside the frame"),
    ("mqtt.url", "http://broker:1883", "mqtt.url", "pattern"),
    ("gpio.light", 17, "gpio", "light and horn both use GPIO 17"),
    ("model.labels", {"lifebuoy": ["lifebuoy"]}, "model", "person"),
    ("sms", {"enabled": True}, "sms", "at least one number"),
])
def test_bad_config_is_refused_naming_the_field(tmp_path: Path, path: str, value: Any,
                                                field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, with_change(path, value)))
    msg = str(err.value)
    assert f"field {field}" in msg and words in msg and str(tmp_path / "node.yaml") in msg, msg


def test_duplicate_equipment_items_are_refused(tmp_path: Path) -> None:
    data = copy.deepcopy(EXAMPLE)
    data["equipment"].append(dict(data["equipment"][0]))
    with pytest.raises(ConfigError, match="lifebuoy more than once"):
        load_config(write(tmp_path, data))


@pytest.mark.parametrize(("text", "words"), [
    ("node_id: [unclosed", "not valid YAML"),
    ("- just\n- a list\n", "must be a YAML mapping"),
])
def test_unreadable_config(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_config(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_check_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, EXAMPLE)
    assert main(["run", str(good), "--check-config"]) == 0
    bad = write(tmp_path, with_change("rules.dwell_s", -1))
    assert main(["run", str(bad), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert "field rules.dwell_s" in err and "greater than or equal to 0" in err


def test_operating_point_comes_from_the_models_manifest_entry(tmp_path: Path) -> None:
    """Without model.conf a node runs at its model's calibrated point; a set conf wins."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "tuned.pt").write_bytes(b"weights of a fine-tune")
    (models / "person.pt").symlink_to("tuned.pt")
    (models / "manifest.yaml").write_text(yaml.safe_dump({"models": {"tuned": {
        "file": "tuned.pt", "source": {"kind": "local"}, "licence": "Apache-2.0",
        "classes": {0: "person"}, "labels": {"person": ["person"]},
        "operating_conf": 0.2, "operating_conf_water": 0.12}}}))
    model = load_config(write(tmp_path, with_change("model.conf", None))).model
    assert (model.conf, model.conf_water, model.conf_at("water")) == (0.2, 0.12, 0.12)
    set_conf = load_config(write(tmp_path, EXAMPLE)).model   # a set conf is the one point
    assert (set_conf.conf, set_conf.conf_at("water")) == (0.35, 0.35)
    export = models / "tuned_openvino_model"   # an export takes its .pt's point
    export.mkdir()
    on_export = with_change("model.conf", None)
    on_export["model"]["path"] = "models/tuned_openvino_model"
    assert load_config(write(tmp_path, on_export)).model.conf == 0.2
    (models / "person.pt").unlink()
    (models / "person.pt").write_bytes(b"a model the manifest does not know")
    assert load_config(write(tmp_path, with_change("model.conf", None))).model.conf == 0.25


def test_shipped_models_carry_their_operating_points() -> None:
    """The committed manifest: pond-person-v1 at 0.20, person-offline at 0.25, pond-person-v2
    at 0.35 on the bank and 0.15 in the water (eval figures)."""
    from edge.manifest import load_manifest
    man = load_manifest(Path(__file__).resolve().parents[2] / "models" / "manifest.yaml")
    assert man.models["pond-person-v1"].operating_conf == 0.20
    assert man.models["person-offline"].operating_conf == 0.25
    v2 = man.models["pond-person-v2"]
    assert (v2.operating_conf, v2.operating_conf_water) == (0.35, 0.15)
    assert man.default == "pond-person-v2"
