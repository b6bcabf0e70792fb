#!/usr/bin/env python3
"""Assemble the pond-person fine-tune dataset: real people in water, tiny people, bank scenes."""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from dataclasses import replace
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


def _light(frame: np.ndarray, rng: random.Random) -> np.ndarray:
    """One of LIGHTS applied to a float frame: haze (flat grey mixed in), then gain."""
    gain, haze = rng.choice(LIGHTS)
    if haze:
        frame = (1.0 - haze) * frame + haze * frame.mean()
    return frame * gain


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
        lines.append(yolo_line(box, W, H))
    frame = _light(frame, rng)
    frame = frame + np.random.default_rng(rng.randrange(1 << 30)).normal(0, 2.0, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8), lines


def near_scene(rng: random.Random, cuts: dict[str, tuple[np.ndarray, np.ndarray, float]],
               backgrounds: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray,
                                                                               list[str]]:
    """One still with 1-2 people close to the camera (250-500 px tall), with labels."""
    pond_name = rng.choice(sorted(PONDS))
    bg, water = backgrounds[pond_name]
    pond = PONDS[pond_name]
    frame = bg.copy()
    wy = int(pond.water_y * H)
    off = rng.randrange(W)
    frame[wy:] = water[:, off:off + W]
    lines = []
    for _ in range(rng.randint(1, 2)):
        body_px = rng.uniform(250, 500)
        y = rng.uniform(body_px / H + 0.02, 1.0)
        near = replace(pond, ppm0=body_px, ppm_slope=0.0)
        box = paste(frame, cuts[rng.choice(sorted(SOURCES))], 1.0, rng.uniform(0.1, 0.9), y,
                    0.0, rng.random() < 0.5, near)
        if box is not None:
            lines.append(yolo_line(box, W, H))
    return np.clip(_light(frame, rng), 0, 255).astype(np.uint8), lines


def yolo_line(box: Sequence[float], w: int, h: int) -> str:
    """A class-0 YOLO label line for a pixel box (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = box
    return (f"0 {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
            f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")


def write_scenes(out: Path, n: int, rng: random.Random, near: bool = False) -> int:
    """Render n labelled bank stills (near: people close to the camera) into out/."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    cuts = cutouts()
    backgrounds = {name: background(p) for name, p in PONDS.items()}
    make, tag = (near_scene, "near") if near else (bank_scene, "scene")
    for k in range(n):
        img, lines = make(rng, cuts, backgrounds)
        cv2.imwrite(str(out / "images" / f"{tag}_{k:04d}.jpg"), img,
                    [cv2.IMWRITE_JPEG_QUALITY, 88])
        (out / "labels" / f"{tag}_{k:04d}.txt").write_text("\n".join(lines) + "\n"
                                                          if lines else "")
    return n


def write_rehearsal(out: Path, copies: int, rng: random.Random, base_model: Path) -> int:
    """Real land photos (scikit-image's astronaut and cameraman) re-framed copies times each,
    labelled with the base model's own confident boxes, so the fine-tune keeps full bodies."""
    from skimage import data
    from ultralytics import YOLO
    model = YOLO(str(base_model))
    photos = {"astronaut": cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR),
              "camera": cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2BGR)}
    n = 0
    for name, img in photos.items():
        res = model.predict(img, imgsz=640, conf=0.5, verbose=False)[0]
        boxes = res.boxes.xyxy.cpu().numpy().tolist()
        for k in range(copies):
            s = rng.uniform(0.6, 1.6)
            im = cv2.resize(img, None, fx=s, fy=s)
            bx = [[v * s for v in b] for b in boxes]
            if rng.random() < 0.5:
                im = im[:, ::-1].copy()
                bx = [[im.shape[1] - b[2], b[1], im.shape[1] - b[0], b[3]] for b in bx]
            im = np.clip(im.astype(np.float32) * rng.uniform(0.6, 1.3), 0, 255).astype(np.uint8)
            canvas = np.full((max(540, im.shape[0]), max(960, im.shape[1]), 3),
                             rng.randrange(40, 200), np.uint8)
            ox = rng.randrange(canvas.shape[1] - im.shape[1] + 1)
            oy = rng.randrange(canvas.shape[0] - im.shape[0] + 1)
            canvas[oy:oy + im.shape[0], ox:ox + im.shape[1]] = im
            lines = [yolo_line((b[0] + ox, b[1] + oy, b[2] + ox, b[3] + oy), canvas.shape[1],
                               canvas.shape[0]) for b in bx]
            cv2.imwrite(str(out / "images" / f"land_{name}_{k:03d}.jpg"), canvas,
                        [cv2.IMWRITE_JPEG_QUALITY, 90])
            (out / "labels" / f"land_{name}_{k:03d}.txt").write_text("\n".join(lines) + "\n")
            n += 1
    return n


def build(out: Path, water: Path, tiny: Path, scenes: int, water_val: int, scene_val: int,
          tiny_limit: int | None, water_limit: int | None = None, near: int = 0,
          rehearsal: int = 0, base_model: Path | None = None) -> Path:
    """Write the dataset under out and return its data.yaml."""
    rng = random.Random(SEED)
    wnames = sorted(p.name for p in (water / "images").iterdir())
    rng.shuffle(wnames)
    tnames = sorted(p.name for p in (tiny / "images").iterdir())
    rng.shuffle(tnames)
    if tiny_limit is not None:
        tnames = tnames[:tiny_limit]
    wtrain = wnames[water_val:water_val + water_limit if water_limit is not None else None]
    counts = {
        "water_train": link_split(water, out / "train", "wp", wtrain),
        "water_val": link_split(water, out / "val", "wp", wnames[:water_val]),
        "tiny_train": link_split(tiny, out / "train", "tp", tnames),
        "scene_train": write_scenes(out / "train", scenes, rng),
        "near_train": write_scenes(out / "train", near, rng, near=True),
        "land_photo_train": (write_rehearsal(out / "train", rehearsal, rng, base_model)
                             if rehearsal and base_model else 0),
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
    p.add_argument("--water-limit", type=int, default=None, help="use at most this many")
    p.add_argument("--near", type=int, default=0, help="generated stills of people close by")
    p.add_argument("--rehearsal", type=int, default=0,
                   help="re-framed copies of each real land photo, labelled by --base-model")
    p.add_argument("--base-model", default="models/person-offline.pt")
    a = p.parse_args(argv)
    print(build(Path(a.out), Path(a.water), Path(a.tiny), a.scenes, a.water_val, a.scene_val,
                a.tiny_limit, a.water_limit, a.near, a.rehearsal, Path(a.base_model)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
