#!/usr/bin/env python3
"""Assemble the pond-person fine-tune dataset: real people in water, tiny people, bank scenes."""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import yaml

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.make_scenes import SOURCES, background, cutouts, draw_lifebuoy, paste  # noqa: E402
from scripts.scene_table import ADULT_M, CHILD_M, PONDS, H, W  # noqa: E402

SEED = 20261201
LIGHTS = [(1.0, 0.0), (0.55, 0.0), (1.0, 0.35), (1.3, 0.0), (0.8, 0.15)]  # gain, haze


def link_split(src: Path, out: Path, prefix: str, names: Sequence[str]) -> int:
    """Symlink images and copy labels of a YOLO folder into out/{images,labels}; count."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for name in names:
        img = src / "images" / name
        dst = out / "images" / f"{prefix}_{name}"
        if not dst.exists():
            dst.symlink_to(img.resolve())
        lab = src / "labels" / (Path(name).stem + ".txt")
        text = lab.read_text() if lab.exists() else ""
        (out / "labels" / f"{prefix}_{Path(name).stem}.txt").write_text(text)
    return len(names)


def bank_scene(rng: random.Random, cuts: dict[str, tuple[np.ndarray, np.ndarray, float]],
               backgrounds: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray,
                                                                               list[str]]:
    """One still: 1-4 people on field, bank or in the water of a generated pond, with labels."""
    pond_name = rng.choice(sorted(PONDS))
    pond = PONDS[pond_name]
    bg, water = backgrounds[pond_name]
    frame = bg.copy()
    wy = int(pond.water_y * H)
    off = rng.randrange(W)
    frame[wy:] = water[:, off:off + W]
    if rng.random() < 0.7:
        draw_lifebuoy(frame)
    lines = []
    people = []
    for _ in range(rng.randint(1, 4)):
        y = rng.uniform(pond.field_end - 0.08, min(0.97, pond.water_y + 0.15))
        depth = rng.uniform(0.2, 0.9) if y >= pond.water_y else 0.0
        people.append((y, rng.uniform(0.05, 0.95), depth))
    for y, x, depth in sorted(people):   # far first
        key = rng.choice(sorted(SOURCES))
        stature = rng.choice([CHILD_M, 1.3, 1.45, 1.6, ADULT_M]) * rng.uniform(0.9, 1.1)
        box = paste(frame, cuts[key], stature, x, y, depth, rng.random() < 0.5, pond)
        if box is None:
            continue
        x1, y1, x2, y2 = box
        lines.append(f"0 {(x1 + x2) / 2 / W:.6f} {(y1 + y2) / 2 / H:.6f} "
                     f"{(x2 - x1) / W:.6f} {(y2 - y1) / H:.6f}")
    gain, haze = rng.choice(LIGHTS)
    if haze:
        frame = (1.0 - haze) * frame + haze * frame.mean()
    frame = frame * gain + np.random.default_rng(rng.randrange(1 << 30)).normal(0, 2.0, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8), lines


def write_scenes(out: Path, n: int, rng: random.Random) -> int:
    """Render n labelled bank stills into out/{images,labels}."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    cuts = cutouts()
    backgrounds = {name: background(p) for name, p in PONDS.items()}
    for k in range(n):
        img, lines = bank_scene(rng, cuts, backgrounds)
        cv2.imwrite(str(out / "images" / f"scene_{k:04d}.jpg"), img,
                    [cv2.IMWRITE_JPEG_QUALITY, 88])
        (out / "labels" / f"scene_{k:04d}.txt").write_text("\n".join(lines) + "\n"
                                                           if lines else "")
    return n


def build(out: Path, water: Path, tiny: Path, scenes: int, water_val: int, scene_val: int,
          tiny_limit: int | None) -> Path:
    """Write the dataset under out and return its data.yaml."""
    rng = random.Random(SEED)
    wnames = sorted(p.name for p in (water / "images").iterdir())
    rng.shuffle(wnames)
    tnames = sorted(p.name for p in (tiny / "images").iterdir())
    rng.shuffle(tnames)
    if tiny_limit is not None:
        tnames = tnames[:tiny_limit]
    counts = {
        "water_train": link_split(water, out / "train", "wp", wnames[water_val:]),
        "water_val": link_split(water, out / "val", "wp", wnames[:water_val]),
        "tiny_train": link_split(tiny, out / "train", "tp", tnames),
        "scene_train": write_scenes(out / "train", scenes, rng),
    }
    counts["scene_val"] = write_scenes(out / "val_scenes", scene_val, random.Random(SEED + 1))
    for sub in ("images", "labels"):   # held-out scenes join the val folder
        for p in (out / "val_scenes" / sub).iterdir():
            p.rename(out / "val" / sub / ("v" + p.name))
    data = {"path": str(out.resolve()), "train": "train/images", "val": "val/images",
            # the base model's own classes, so its class head is kept (every label is 0)
            "names": {0: "Normal", 1: "Fall"}, "counts": counts,
            "sources": {"water-people": "AI Drone Lifeguard v6, Roboflow Universe, CC BY 4.0",
                        "tiny-people": "Tiny people detection RPI (resq), Roboflow Universe, "
                                       "CC BY 4.0",
                        "scenes": "scripts/make_scenes.py cut-outs of Ultralytics bus.jpg/"
                                  "zidane.jpg on scikit-image textures"}}
    path = out / "data.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build the dataset and print its data.yaml path."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="var/finetune/pond-person-v1")
    p.add_argument("--water", default="../shared/datasets/water-people/train")
    p.add_argument("--tiny", default="../shared/datasets/tiny-people/train")
    p.add_argument("--scenes", type=int, default=300, help="generated bank stills")
    p.add_argument("--water-val", type=int, default=60, help="water images held out for val")
    p.add_argument("--scene-val", type=int, default=40, help="generated stills for val")
    p.add_argument("--tiny-limit", type=int, default=None, help="use at most this many")
    a = p.parse_args(argv)
    print(build(Path(a.out), Path(a.water), Path(a.tiny), a.scenes, a.water_val, a.scene_val,
                a.tiny_limit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
