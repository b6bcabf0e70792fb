"""The torch-free run times: ONNX and NCNN exports of the offline model, run without Ultralytics."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from edge.config import ConfigError, ModelConfig, load_config, runtime_for
from edge.vision.detector import DetectorError, load_detector
from edge.vision.exported import ExportedDetector, NcnnNetwork
from edge.vision.yolo_io import letterbox

ROOT = Path(__file__).resolve().parents[3]
WATER = ROOT / "tests" / "data" / "water-people" / "images"
LABELS = {"person": ["person", "Normal", "Fall"]}

# Replays a scene with the node's own CLI, then reports what the process imported.
TORCH_FREE = """
import json, sys
from edge.cli import main
rc = main(["replay", sys.argv[1], "--source", sys.argv[2], "--events-out", sys.argv[3]])
print(json.dumps({"rc": rc, "torch": "torch" in sys.modules,
                  "ultralytics": "ultralytics" in sys.modules}))
"""


@pytest.fixture(scope="session")
def exports(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The offline model exported here as `pondwatch-edge model export` does (a dynamic ONNX,
    an NCNN folder), each with the trust record of an export made on the node."""
    from edge.model.cli import export_model
    from edge.trust import check_model, write_record
    folder = tmp_path_factory.mktemp("exports")
    pt = folder / model_path.name
    shutil.copy(model_path, pt)
    verdict = check_model(pt, ModelConfig(path=str(pt)))
    out = {}
    for fmt, runtime in (("onnx", "onnxruntime"), ("ncnn", "ncnn")):
        out[runtime] = export_model(pt, fmt, 640)
        write_record(out[runtime], verdict)
    return out


def cands(det: Any, img: np.ndarray, imgsz: int) -> list[tuple[float, tuple[float, ...]]]:
    """(conf, box) of every candidate >= 0.1, strongest first."""
    return sorted(((c.conf, c.box) for c in det.predict([img], imgsz, 0.1)[0]), reverse=True)


def test_the_file_chooses_the_runtime_and_a_mismatch_is_refused(tmp_path: Path) -> None:
    """.onnx → onnxruntime, NAME_ncnn_model → ncnn, else Ultralytics; ncnn for a .pt is an
    error naming the field."""
    assert runtime_for("models/a.onnx") == "onnxruntime"
    assert runtime_for("/m/a_ncnn_model/") == "ncnn"
    assert runtime_for("models/a.pt") == runtime_for("a_openvino_model") == "ultralytics"
    assert ModelConfig(path="a.onnx", runtime="ultralytics").runtime == "ultralytics"
    cfg = tmp_path / "node.yaml"
    cfg.write_text(yaml.safe_dump({"node_id": "n-1", "pond_id": "p", "model": {
        "path": "a.pt", "runtime": "ncnn"}, "zones": {"water": [[0, 0], [1, 0], [1, 1]]}}))
    with pytest.raises(ConfigError, match=r"model.*runtime ncnn needs an NAME_ncnn_model"):
        load_config(cfg)


@pytest.mark.parametrize("runtime", ["onnxruntime", "ncnn"])
def test_an_export_finds_what_the_pt_finds(runtime: str, exports: dict[str, Path],
                                           detector: Any, assets: Path) -> None:
    """Same boxes (within a pixel) and scores (within 0.005) as Ultralytics on the .pt, on a
    portrait and a landscape photo, two swimmers' photos with lifebuoys, and a zoom window at
    320 of each: letterbox, decoding and NMS are Ultralytics', and NCNN runs the letterboxed
    rectangle, not its export's square (on which 0012.jpg gave four candidates for two and
    water-people recall fell by 0.07, issue 20)."""
    det = load_detector(ModelConfig(path=str(exports[runtime]), labels=LABELS))
    assert isinstance(det, ExportedDetector)
    for path in (assets / "bus.jpg", assets / "zidane.jpg", WATER / "0012.jpg",
                 WATER / "0072.jpg"):
        img = cv2.imread(str(path))
        window = img[300:600, 200:500] if img.shape[0] > 600 else img[100:400, 100:400]
        for view, size in ((img, 640), (window, 320)):
            ours, theirs = cands(det, view, size), cands(detector, view, size)
            assert len(ours) == len(theirs) and ours, (path.name, size, ours, theirs)
            for (c1, b1), (c2, b2) in zip(ours, theirs, strict=True):
                assert abs(c1 - c2) < 0.005 and np.allclose(b1, b2, atol=1.0), (path.name, size)


def test_ncnn_finds_the_bus_people_and_tracks_them(exports: dict[str, Path],
                                                   assets: Path) -> None:
    """The NCNN export finds the four people of bus.jpg, tracked."""
    det = load_detector(ModelConfig(path=str(exports["ncnn"]), labels=LABELS))
    bus = cv2.imread(str(assets / "bus.jpg"))
    assert len([d for d in det.detect(bus) if d.conf >= 0.25]) >= 3
    det.track(bus)
    tracked = det.track(bus)
    assert len(tracked) >= 4 and all(d.track_id is not None for d in tracked)


def test_an_ncnn_graph_without_a_known_head_runs_at_its_export_size(
        exports: dict[str, Path], tmp_path: Path) -> None:
    """The export's own head runs at any size only when cut off; a graph whose head is not
    the Detect head's (here its class Sigmoid swapped for TanH) runs whole, padded square."""
    net = NcnnNetwork(exports["ncnn"])
    assert net.fixed is None
    blob, _ = letterbox(np.zeros((1080, 1920, 3), np.uint8), 640)
    assert net.run(blob).shape == (1, 4 + 2, 80 * 48 + 40 * 24 + 20 * 12)
    odd = tmp_path / "odd_ncnn_model"
    shutil.copytree(exports["ncnn"], odd)
    param = odd / "model.ncnn.param"
    param.write_text(param.read_text().replace("Sigmoid ", "TanH    "))
    net = NcnnNetwork(odd)
    assert net.fixed == (640, 640)
    blob, _ = letterbox(np.zeros((1080, 1920, 3), np.uint8), 640, fixed=net.fixed)
    assert net.run(blob).shape == (1, 4 + 2, 8400)


def test_an_export_without_its_trust_record_is_refused(exports: dict[str, Path],
                                                       tmp_path: Path) -> None:
    """An ONNX file this node did not export (no trust record) never reaches onnxruntime."""
    stray = tmp_path / "stray.onnx"
    shutil.copy(exports["onnxruntime"], stray)
    with pytest.raises(DetectorError, match="trust record"):
        load_detector(ModelConfig(path=str(stray), labels=LABELS))


def test_a_broken_export_is_a_detector_error(tmp_path: Path, exports: dict[str, Path]) -> None:
    """A truncated NCNN folder is refused with the run time named, not a crash."""
    from edge.trust import TrustVerdict, write_record
    bad = tmp_path / "bad_ncnn_model"
    shutil.copytree(exports["ncnn"], bad)
    (bad / "model.ncnn.param").write_text("garbage\n")
    write_record(bad, TrustVerdict("pinned", bad, "0" * 64, "test"))
    with pytest.raises(DetectorError, match="on ncnn"):
        load_detector(ModelConfig(path=str(bad), labels=LABELS))


@pytest.fixture(scope="session")
def torch_free_replays(exports: dict[str, Path], scenes_dir: Path,
                       tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`pondwatch-edge replay` of child_to_bank on an export, in a fresh process (once per
    run time): (what the process imported, its events)."""
    cache: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}

    def run(runtime: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if runtime not in cache:
            tmp = tmp_path_factory.mktemp(runtime)
            raw = yaml.safe_load((scenes_dir / "child_to_bank.yaml").read_text())
            raw["model"]["path"] = str(exports[runtime])
            raw["equipment"] = []      # the kit references are relative to the scenes folder
            (tmp / "node.yaml").write_text(yaml.safe_dump(raw))
            proc = subprocess.run(
                [sys.executable, "-c", TORCH_FREE, str(tmp / "node.yaml"),
                 str(scenes_dir / "child_to_bank.mp4"), str(tmp / "events.jsonl")],
                cwd=ROOT, capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, proc.stderr[-2000:]
            cache[runtime] = (json.loads(proc.stdout.strip().splitlines()[-1]),
                              [json.loads(x) for x in
                               (tmp / "events.jsonl").read_text().splitlines()])
        return cache[runtime]
    return run


@pytest.mark.parametrize("runtime", ["onnxruntime", "ncnn"])
def test_replay_on_an_export_never_imports_torch(runtime: str, torch_free_replays: Any,
                                                 replayed: Any) -> None:
    """A real clip replayed on the export: the child is raised when and as on the .pt, and
    neither torch nor Ultralytics was ever imported."""
    report, events = torch_free_replays(runtime)
    assert report == {"rc": 0, "torch": False, "ultralytics": False}
    child = [e for e in events if e["type"] == "child_near_water"]
    on_pt = [e for e in replayed("child_to_bank") if e["type"] == "child_near_water"]
    assert child and len(on_pt) == 1
    assert abs(child[0]["source_t"] - on_pt[0]["source_t"]) <= 0.4
    assert child[0]["stature_m"] == pytest.approx(on_pt[0]["stature_m"], abs=0.1)


@pytest.mark.parametrize("runtime", ["onnxruntime", "ncnn"])
def test_replay_on_an_export_raises_what_the_pt_raises(runtime: str, torch_free_replays: Any,
                                                       replayed: Any) -> None:
    """The same critical events as on the .pt, nothing more (NCNN at its square export size
    raised the lifebuoy on the bank as a second child at 4.2 s, issue 20)."""
    _, events = torch_free_replays(runtime)
    critical = [e["type"] for e in events if e["severity"] == "critical"]
    assert critical == [e["type"] for e in replayed("child_to_bank")
                        if e["severity"] == "critical"]
