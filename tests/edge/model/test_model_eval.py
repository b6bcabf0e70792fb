"""pondwatch-edge model eval: the gate's figures from `pondwatch-edge eval` on each set."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from edge.cli import main
from edge.manifest import load_manifest
from protocol.digest import sha256_file
from tests.edge.model.test_train import make_dataset

REPO = Path(__file__).resolve().parents[3]


def _yolo_folder(src: Path, split: str, stems: list[str], out: Path) -> Path:
    """images/ and labels/ of some images of a split."""
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    for stem in stems:
        shutil.copy(src / "images" / split / f"{stem}.jpg", out / "images")
        shutil.copy(src / "labels" / split / f"{stem}.txt", out / "labels")
    return out


def test_eval_records_figures_for_this_file(tmp_path: Path, assets: Path,
                                            model_path: Path) -> None:
    """Figures per configured set land in the manifest entry with the file's sha256."""
    ds = tmp_path / "ds"
    make_dataset(ds, assets, model_path)
    _yolo_folder(ds, "val", ["zidane"], tmp_path / "water")
    _yolo_folder(ds, "val", ["bus"], tmp_path / "land")
    sets = tmp_path / "validation.yaml"
    sets.write_text(yaml.safe_dump({"sets": {"w": {"dir": "water", "kind": "water"},
                                             "l": {"dir": "land", "kind": "land"}}}))
    cfg = tmp_path / "node.yaml"
    cfg.write_text(yaml.safe_dump({
        "node_id": "eval-01", "pond_id": "p", "camera": {"source": "x.mp4"},
        "model": {"path": str(model_path), "labels": {"person": ["Normal", "Fall"]}},
        "zones": {"water": [[0, 0], [1, 0], [1, 1], [0, 1]]},
        "outbox": str(tmp_path / "outbox.db")}))
    manifest = tmp_path / "manifest.yaml"
    shutil.copyfile(REPO / "models/manifest.yaml", manifest)
    base = ["model", "--manifest", str(manifest), "eval", "person-offline", "--config", str(cfg),
            "--sets", str(sets)]
    assert main([*base, "--record"]) == 0
    entry = load_manifest(manifest).models["person-offline"]
    assert entry.eval is not None and {"w", "l"} <= set(entry.eval)  # merged with earlier sets
    sha = sha256_file(model_path)
    for fig in (entry.eval["w"], entry.eval["l"]):
        assert fig["sha256"] == sha and 0.5 <= fig["recall"] <= 1.0  # its own pseudo-labels
    assert manifest.read_text().startswith("# PondWatch model manifest")
    assert main([*base, "--set", "nope"]) == 2
    # a set's own config wins over --config: here one whose only zone is a corner of the frame,
    # so the node's detection region leaves out the people of bus.jpg
    corner = tmp_path / "corner.yaml"
    raw = yaml.safe_load(cfg.read_text())
    raw["zones"] = {"water": [[0, 0], [0.05, 0], [0.05, 0.05]]}
    corner.write_text(yaml.safe_dump(raw))
    sets.write_text(yaml.safe_dump({"sets": {"l": {"dir": "land", "kind": "land",
                                                   "config": "corner.yaml"}}}))
    assert main([*base, "--record"]) == 0
    assert load_manifest(manifest).models["person-offline"].eval["l"]["recall"] < 0.5
    sets.write_text(yaml.safe_dump({"sets": {"l": {"dir": "land", "config": "gone.yaml"}}}))
    assert main(base) == 2  # a configured config that is missing is an error too
    sets.write_text(yaml.safe_dump({"sets": {"w": {"dir": "water", "kind": "water"},
                                             "l": {"dir": "land", "kind": "land"}}}))
    (tmp_path / "land" / "images" / "bus.jpg").unlink()
    shutil.rmtree(tmp_path / "land")
    assert main(base) == 2  # a configured folder that is missing is an error, not a skip
