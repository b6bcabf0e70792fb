"""Real YOLO inference on real photos through the detector seam."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.config import ModelConfig
from edge.vision.detector import DetectorError, UltralyticsDetector, load_detector, meaning_map


@pytest.fixture(scope="module")
def bus(assets: Path) -> np.ndarray:
    """bus.jpg: four people in front of a bus."""
    img = cv2.imread(str(assets / "bus.jpg"))
    assert img is not None
    return img


def test_bus_people_found_with_track_ids(detector: Any, bus: np.ndarray) -> None:
    """At least three of the four people, each with its own track id, boxes normalised."""
    detector.reset()
    dets = []
    for _ in range(3):  # a few frames: tracks are activated and kept
        dets = detector.track(bus)
    strong = [d for d in dets if d.conf >= 0.35]
    assert len(strong) >= 3
    assert all(d.meaning == "person" and d.cls_name in {"Normal", "Fall"} for d in strong)
    ids = [d.track_id for d in strong]
    assert None not in ids and len(set(ids)) == len(ids)
    for d in strong:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
        assert (y2 - y1) > 0.3  # full-height pedestrians in a 1080-high photo


def test_track_ids_are_stable_and_reset_restarts_them(detector: Any, bus: np.ndarray) -> None:
    """The same photo keeps the same ids; reset() starts again from the first id."""
    detector.reset()
    first = {d.track_id for d in detector.track(bus)}
    second = {d.track_id for d in detector.track(bus)}
    assert first and first == second
    detector.reset()
    assert {d.track_id for d in detector.track(bus)} == first


def test_detect_has_no_ids_and_respects_conf(detector: Any, bus: np.ndarray,
                                             assets: Path) -> None:
    """detect() reports confident boxes only, without track ids; zidane.jpg has two men."""
    dets = detector.detect(bus)
    assert len(dets) >= 3 and all(d.track_id is None and d.conf >= 0.35 for d in dets)
    zidane = cv2.imread(str(assets / "zidane.jpg"))
    assert len(detector.detect(zidane)) == 2


def test_label_map_limits_classes(model_path: Path, bus: np.ndarray) -> None:
    """Only classes the label map names are reported, under their meaning."""
    det = UltralyticsDetector(ModelConfig(path=str(model_path), labels={"person": ["Fall"]}))
    assert all(d.cls_name == "Fall" for d in det.detect(bus))
    assert not det.detect(bus)  # nobody in bus.jpg has fallen


def test_label_map_naming_no_model_class_is_rejected(model_path: Path) -> None:
    """A label map that matches nothing in the model fails fast, naming the classes."""
    with pytest.raises(DetectorError, match="Normal"):
        load_detector(ModelConfig(path=str(model_path), labels={"person": ["person"]}))


def test_missing_untrusted_and_broken_model_files(tmp_path: Path) -> None:
    """A missing file, a file neither pinned nor signed (refused before loading), and a
    signed file that is no model all raise DetectorError."""
    from tests.signed import make_key, sign

    with pytest.raises(DetectorError, match="not found"):
        load_detector(ModelConfig(path=str(tmp_path / "none.pt")))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(DetectorError, match="neither pinned .* nor signed"):
        load_detector(ModelConfig(path=str(bad)))
    key, pub = make_key(tmp_path / "keys")
    sign(bad, key, "bad")
    with pytest.raises(DetectorError, match="cannot load"):
        load_detector(ModelConfig(path=str(bad), trusted_keys=[pub]))


def test_meaning_map_is_case_insensitive_first_wins() -> None:
    """Class names compare case-insensitively; the first meaning listing a name keeps it."""
    assert meaning_map({"person": ["Person"], "child": ["person", "kid"]}) == {
        "person": "person", "kid": "child"}


def test_an_onnx_export_works_through_the_same_seam(model_path: Path, bus: np.ndarray,
                                                    tmp_path: Path) -> None:
    """The model exported to ONNX here (offline) finds the bus people, with tracking."""
    import shutil

    from ultralytics import YOLO  # type: ignore[attr-defined]
    pt = tmp_path / "person.pt"
    shutil.copy(model_path, pt)
    onnx = YOLO(str(pt)).export(format="onnx", imgsz=640, simplify=False, verbose=False)
    from edge.trust import check_model, write_record
    write_record(onnx, check_model(pt, ModelConfig(path=str(pt))))  # as `model export` does
    det = UltralyticsDetector(ModelConfig(path=str(onnx), imgsz=640,
                                          labels={"person": ["Normal", "Fall"]}))
    assert len(det.detect(bus)) >= 3
    tracked = [d for d in det.track(bus) if d.conf >= 0.35]
    assert len(tracked) >= 3 and all(d.track_id is not None for d in tracked)
