#!/usr/bin/env python3
"""Assemble the pond-person-v2 training set: real land, water and tiny people in one mix."""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import yaml

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.make_finetune_data import link_split  # noqa: E402

SEED = 20261206
SHARED = Path("../shared/datasets")


def _boxes(text: str) -> list[tuple[float, float, float, float]]:
    """YOLO label lines as normalised (cx, cy, w, h) tuples (class ignored: all people)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 5:
            out.append(tuple(float(v) for v in parts[1:]))  # type: ignore[arg-type]
    return out


def cctv(img: np.ndarray, boxes: list[tuple[float, float, float, float]],
         rng: random.Random) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """Degrade a photo as a pole-mounted CCTV camera would: tilt, 576p-or-less resolution,
    blur, sensor noise, a timestamp overlay and heavy JPEG; the boxes follow the tilt."""
    h, w = img.shape[:2]
    angle = rng.uniform(-6.0, 6.0)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    img = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    moved = []
    for cx, cy, bw, bh in boxes:
        xs, ys = [], []
        for dx in (-0.5, 0.5):
            for dy in (-0.5, 0.5):
                px, py = (cx + dx * bw) * w, (cy + dy * bh) * h
                xs.append(m[0, 0] * px + m[0, 1] * py + m[0, 2])
                ys.append(m[1, 0] * px + m[1, 1] * py + m[1, 2])
        # a rotated box's corners overshoot the body: shrink toward the box's own size
        shrink = abs(math.sin(math.radians(angle))) * 0.5
        x1, x2 = min(xs), max(xs)
        y1, y2 = min(ys), max(ys)
        ex, ey = (x2 - x1 - bw * w) * shrink, (y2 - y1 - bh * h) * shrink
        x1, x2 = max(0.0, x1 + ex), min(float(w), x2 - ex)
        y1, y2 = max(0.0, y1 + ey), min(float(h), y2 - ey)
        if x2 - x1 >= 2 and y2 - y1 >= 2:
            moved.append(((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h))
    scale = rng.uniform(0.45, 0.9)   # what a 576p sensor resolves of the scene
    small = cv2.resize(img, (max(8, int(w * scale)), max(8, int(h * scale))),
                       interpolation=cv2.INTER_AREA)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    sigma = rng.uniform(0.3, 1.4)
    img = cv2.GaussianBlur(img, (0, 0), sigma)
    noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, rng.uniform(2, 8), img.shape)
    img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.8:
        stamp = datetime(2026, 7, 1) + timedelta(seconds=rng.randrange(90 * 86400))
        cv2.putText(img, stamp.strftime("%Y-%m-%d %H:%M:%S"), (8, 22), cv2.FONT_HERSHEY_SIMPLEX,
                    0.6, (235, 235, 235), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, rng.randrange(20, 51)])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR), moved


def write_land(src: Path, out: Path, names: Sequence[str], share: float,
               rng: random.Random) -> tuple[int, int]:
    """Land photos into out/: a CCTV-degraded copy for `share` of them, the rest linked."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    plain: list[str] = []
    degraded = 0
    for name in names:
        if rng.random() >= share:
            plain.append(name)
            continue
        text = (src / "labels" / (Path(name).stem + ".txt")).read_text()
        img, boxes = cctv(cv2.imread(str(src / "images" / name)), _boxes(text), rng)
        stem = f"lc_{Path(name).stem}"
        cv2.imwrite(str(out / "images" / f"{stem}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        (out / "labels" / f"{stem}.txt").write_text(
            "".join(f"0 {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}\n" for cx, cy, bw, bh in boxes))
        degraded += 1
    return link_split(src, out, "lp", plain), degraded


def write_negatives(src: Path, out: Path) -> int:
    """Background images (no people): linked with empty label files."""
    if not src.is_dir():
        return 0
    names = sorted(p.name for p in src.iterdir() if p.suffix.lower() in {".jpg", ".png"})
    return link_split(src.parent, out, "neg", names) if src.name == "images" else 0


def build(out: Path, shared: Path, negatives: Path, val_each: int, tiny_limit: int | None,
          cctv_share: float) -> Path:
    """Write the mixed dataset under out and return its data.yaml."""
    rng = random.Random(SEED)
    picked: dict[str, list[str]] = {}
    for key in ("land-people", "water-people", "tiny-people"):
        names = sorted(p.name for p in (shared / key / "train" / "images").iterdir())
        rng.shuffle(names)
        picked[key] = names
    land, water, tiny = picked["land-people"], picked["water-people"], picked["tiny-people"]
    if tiny_limit is not None:
        tiny = tiny[:tiny_limit]
    counts: dict[str, int] = {}
    # selection during training uses held-out train images only: no `valid` split is touched
    counts["land_val"] = link_split(shared / "land-people/train", out / "val", "lp",
                                    land[:val_each])
    counts["water_val"] = link_split(shared / "water-people/train", out / "val", "wp",
                                     water[:val_each])
    counts["land_train"], counts["land_train_cctv"] = write_land(
        shared / "land-people/train", out / "train", land[val_each:], cctv_share, rng)
    counts["water_train"] = link_split(shared / "water-people/train", out / "train", "wp",
                                       water[val_each:])
    counts["tiny_train"] = link_split(shared / "tiny-people/train", out / "train", "tp", tiny)
    counts["negatives_train"] = write_negatives(negatives / "images", out / "train")
    data = {"path": str(out.resolve()), "train": "train/images", "val": "val/images",
            # the base model's own classes, so its class head is kept (every label is 0)
            "names": {0: "Normal", 1: "Fall"}, "counts": counts,
            "sources": {"land-people": "MS COCO 2017 (annotations CC BY 4.0; image licences "
                                       "per ../shared/datasets/land-people/licences.csv)",
                        "water-people": "AI Drone Lifeguard v6, Roboflow Universe, CC BY 4.0",
                        "tiny-people": "Tiny people detection RPI (resq), Roboflow Universe, "
                                       "CC BY 4.0",
                        "negatives": f"{negatives}/../attribution.csv"}}
    path = out / "data.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build the mixed dataset and print its data.yaml path."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="var/finetune/pond-person-v2")
    p.add_argument("--shared", default=str(SHARED), help="folder holding the three data sets")
    p.add_argument("--negatives", default="var/negatives/train",
                   help="folder with images/ of things that are not people (background)")
    p.add_argument("--val-each", type=int, default=50,
                   help="train images of land and of water held out for selection")
    p.add_argument("--tiny-limit", type=int, default=None, help="use at most this many")
    p.add_argument("--cctv-share", type=float, default=0.5,
                   help="share of land photos replaced by a CCTV-degraded copy")
    a = p.parse_args(argv)
    print(build(Path(a.out), Path(a.shared), Path(a.negatives), a.val_each, a.tiny_limit,
                a.cctv_share))
    return 0


if __name__ == "__main__":
    sys.exit(main())
