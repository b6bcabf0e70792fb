"""pondwatch-edge model train on a tiny dataset made here: 1 epoch, imgsz 160, four photos."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import pytest
import yaml

from edge.cli import main
from edge.config import ModelConfig
from edge.manifest import ModelStoreError, load_manifest
from edge.model import store as modelstore
from edge.model.train import load_recipe
from edge.trust import ModelTrustError, check_model
from protocol.digest import sha256_file

REPO = Path(__file__).resolve().parents[3]


def make_dataset(root: Path, assets: Path, model_path: Path) -> Path:
    """A YOLO dataset from bus.jpg and zidane.jpg (and their mirror images), labelled with
    the people the offline model finds at 640 (class 0 Normal, as the base names it)."""
    from ultralytics import YOLO  # type: ignore[attr-defined]

    model = YOLO(str(model_path), task="detect")
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    for photo in ("bus.jpg", "zidane.jpg"):
        img = cv2.imread(str(assets / photo))
        boxes = model.predict(img, conf=0.4, verbose=False)[0].boxes.xywhn.cpu().numpy()
        assert len(boxes) >= 2
        for split, flip in (("train", False), ("train", True), ("val", False)):
            name = f"{Path(photo).stem}{'-flip' if flip else ''}"
            out = cv2.flip(img, 1) if flip else img
            cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), out)
            rows = [f"0 {1 - x if flip else x:.6f} {y:.6f} {w:.6f} {h:.6f}"
                    for x, y, w, h in boxes]
            (root / "labels" / split / f"{name}.txt").write_text("\n".join(rows) + "\n")
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({"path": str(root), "train": "images/train",
                                    "val": "images/val", "names": {0: "Normal", 1: "Fall"}}))
    return data


def test_recipe_is_the_domain_finetune() -> None:
    """The recipe file says what the lead's pond-person-v1 run used."""
    r = load_recipe()
    assert (r.optimizer, r.lr0, r.lrf, r.warmup_epochs, r.cos_lr, r.freeze) == (
        "AdamW", 0.0005, 0.2, 0, False, 10)
    assert (r.mosaic, r.close_mosaic, r.patience, r.workers, r.batch) == (1.0, 0, 0, 2, 16)
    assert (r.amp, r.plots, r.val, r.deterministic, r.seed, r.cache) == (
        False, False, True, True, 0, False)


def test_bad_recipe_named(tmp_path: Path) -> None:
    """A recipe with an unknown key is refused naming it."""
    bad = tmp_path / "r.yaml"
    bad.write_text((REPO / "models/recipes/domain-finetune.yaml").read_text() + "lr: 0.1\n")
    with pytest.raises(ModelStoreError, match="lr"):
        load_recipe(bad)


def test_train_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Missing data, unknown base and bad sizes are refused before training."""
    d = ["model", "--dir", str(tmp_path)]
    assert main([*d, "train", "--data", str(tmp_path / "no.yaml"), "--base", "person-offline",
                 "--epochs", "1", "--imgsz", "160"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main([*d, "train", "--data", "x.yaml", "--base", "person-offline", "--epochs", "0",
                 "--imgsz", "160"]) == 2
    data = tmp_path / "d.yaml"
    data.write_text("train: x\n")
    assert main([*d, "train", "--data", str(data), "--base", "nope", "--epochs", "1",
                 "--imgsz", "160"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_train_one_epoch_writes_manifest_entry(tmp_path: Path, assets: Path,
                                               model_path: Path) -> None:
    """One epoch at 160 gives new weights that load, and a manifest entry with sha256, base,
    data and recipe."""
    data = make_dataset(tmp_path / "ds", assets, model_path)
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(model_path, models / "person-offline.pt")
    manifest = tmp_path / "manifest.yaml"
    shutil.copyfile(REPO / "models/manifest.yaml", manifest)
    key = tmp_path / "county.key"  # the county's model key, made for this test
    assert main(["model", "keygen", str(key)]) == 0
    assert main(["model", "--manifest", str(manifest), "--dir", str(models), "train",
                 "--data", str(data), "--base", "person-offline", "--epochs", "1",
                 "--imgsz", "160", "--batch", "4", "--name", "tiny-ft",
                 "--sign-key", str(key)]) == 0
    man = load_manifest(manifest)
    entry = man.models["tiny-ft"]
    weights = models / "tiny-ft.pt"
    assert entry.sha256 == sha256_file(weights)
    assert entry.base == "person-offline" and entry.data == [str(data)]
    assert entry.source.kind == "local" and entry.licence == "Apache-2.0"
    assert entry.recipe and entry.recipe["lr0"] == 0.0005 and entry.recipe["freeze"] == 10
    assert entry.recipe["epochs"] == 1 and entry.recipe["imgsz"] == 160
    assert set(entry.labels["person"]) == {"Normal", "Fall"}
    assert modelstore.resolve("tiny-ft", models, man).path == weights
    # signed on the workstation that trained it: a node trusting the key loads it, no other
    pub = (tmp_path / "county.key.pub").read_text().split()[0]
    verdict = check_model(weights, ModelConfig(path=str(weights), trusted_keys=[pub]))
    assert verdict.how == "signed" and verdict.name == "tiny-ft"
    assert verdict.entry is not None and verdict.entry["sha256"] == entry.sha256
    with pytest.raises(ModelTrustError, match="not trusted here"):
        check_model(weights, ModelConfig(path=str(weights)))
    assert "person-offline" in man.models  # the rest of the manifest is kept
    assert "# PondWatch model manifest" in manifest.read_text()
    assert main(["model", "--manifest", str(manifest), "--dir", str(models), "train",
                 "--data", str(data), "--base", "person-offline", "--epochs", "1",
                 "--imgsz", "160", "--name", "tiny-ft"]) == 2  # the name is taken
    # weights trained elsewhere with the recipe (the lead's pond-person-v1 run) are recorded
    outside = tmp_path / "best.pt"
    shutil.copyfile(weights, outside)
    add = ["model", "--manifest", str(manifest), "--dir", str(models), "add"]
    assert main([*add, "copied", "--file", str(outside), "--base", "person-offline", "--data",
                 str(data), "--epochs", "4", "--imgsz", "480"]) == 0
    copied = load_manifest(manifest).models["copied"]
    assert copied.sha256 == sha256_file(outside) and copied.base == "person-offline"
    assert copied.recipe and copied.recipe["epochs"] == 4 and copied.recipe["imgsz"] == 480
    assert main([*add, "copied", "--file", str(outside), "--base", "person-offline", "--data",
                 str(data), "--epochs", "4", "--imgsz", "480"]) == 2
    shutil.copyfile(weights, models / "inplace.pt")  # already under models/: recorded there
    assert main([*add, "inplace", "--file", str(models / "inplace.pt"), "--base",
                 "person-offline", "--data", str(data), "--epochs", "4", "--imgsz", "480"]) == 0
    assert modelstore.resolve("inplace", models, load_manifest(manifest)).path.is_file()
    assert main([*add, "other", "--file", str(tmp_path / "none.pt"), "--base",
                 "person-offline", "--data", str(data), "--epochs", "4", "--imgsz", "480"]) == 2
