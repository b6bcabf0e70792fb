#!/usr/bin/env python3
"""Build the land eval set: generated scene frames with their truth, plus bus.jpg/zidane.jpg.

`pondwatch-edge eval` reads it like any YOLO folder:
    .venv/bin/python bench/land_set.py build/land-set
    pondwatch-edge eval bench/eval/water.yaml --dataset build/land-set
People on land must not get worse while detection in water gets better (issue 10).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.make_scenes import assets_dir  # noqa: E402

EVERY = 5       # one frame per second of the 5 fps clips
# Hand-drawn boxes (pixels x1, y1, x2, y2) of the people in Ultralytics' sample photos.
PHOTOS = {
    "bus.jpg": [(50, 400, 240, 905), (215, 400, 350, 870), (665, 370, 810, 880),
                (0, 550, 75, 880)],
    "zidane.jpg": [(120, 195, 1145, 720), (745, 40, 1140, 720)],
}


def scenes_dir() -> Path:
    """The generated scenes folder the tests use (same cache key as tests/conftest.py)."""
    script, table = ROOT / "scripts" / "make_scenes.py", ROOT / "scripts" / "scene_table.py"
    digest = hashlib.sha256(script.read_bytes() + table.read_bytes()).hexdigest()[:12]
    out = ROOT / "build" / f"scenes-{digest}"
    if not (out / ".complete").exists():
        subprocess.run([sys.executable, str(script), str(out), "--model",
                        str(ROOT / "models" / "person-offline.pt")], check=True, cwd=ROOT)
        (out / ".complete").write_text("ok\n")
    return out


def _write(out: Path, name: str, img: np.ndarray, boxes: Sequence[Sequence[float]], w: int,
           h: int) -> None:
    """One image and its YOLO label file (class 0, normalised centre and size)."""
    cv2.imwrite(str(out / "images" / f"{name}.jpg"), img)
    lines = []
    for x1, y1, x2, y2 in boxes:
        lines.append(f"0 {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
                     f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
    (out / "labels" / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))


def build(out: Path, scenes: Path) -> int:
    """Write out/images and out/labels; return the number of images."""
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    n = 0
    for truth_file in sorted(scenes.glob("*.truth.json")):
        meta = json.loads(truth_file.read_text())
        w, h = meta["size"]
        cap = cv2.VideoCapture(str(truth_file.with_name(f"{meta['scene']}.mp4")))
        for i, frame_truth in enumerate(meta["frames"]):
            ok, img = cap.read()
            if not ok:
                break
            if i % EVERY:
                continue
            boxes = [tuple(p["box"]) for p in frame_truth["persons"]]
            _write(out, f"{meta['scene']}-{i:03d}", img, boxes, w, h)
            n += 1
        cap.release()
    for photo, hand in PHOTOS.items():
        pic = cv2.imread(str(assets_dir() / photo))
        if pic is None:
            raise FileNotFoundError(assets_dir() / photo)
        _write(out, Path(photo).stem, pic, hand, pic.shape[1], pic.shape[0])
        n += 1
    return n


def main() -> int:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default=str(ROOT / "build" / "land-set"))
    args = p.parse_args()
    n = build(Path(args.out), scenes_dir())
    print(f"{args.out}: {n} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
