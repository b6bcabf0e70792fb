#!/usr/bin/env python3
"""Generate deterministic pond test clips (real people from Ultralytics' photos) and configs."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.scene_table import (  # noqa: E402
    ADULT_M,
    FPS,
    LIFEBUOY_ROI,
    PONDS,
    SIGN_ROI,
    Actor,
    H,
    Pond,
    Scene,
    W,
    scenes,
)

__all__ = ["Actor", "Pond", "Scene", "generate", "main", "scenes"]
REPO = Path(__file__).resolve().parent.parent
SEED = 20260601
# The test and bench caches key on this file's hash alone: pin the table's so editing the
# table changes this file too. generate() refuses to run on a mismatch.
TABLE_DIGEST = "78f12dae0784"
# Person cut-outs: photo, box [x1, y1, x2, y2], share of the body height the box shows.
SOURCES: dict[str, tuple[str, tuple[int, int, int, int], float]] = {
    "bus0": ("bus.jpg", (46, 383, 215, 907), 1.0),
    "bus1": ("bus.jpg", (210, 391, 347, 872), 1.0),
    "zidane1": ("zidane.jpg", (760, 40, 1125, 720), 0.55),
}
NOISE = [np.random.default_rng(SEED + k).normal(0, 2.0, (H, W, 1)).astype(np.float32)
         for k in range(7)]                # sensor noise, cycled
Cuts = dict[str, tuple[np.ndarray, np.ndarray, float]]
Bgs = dict[str, tuple[np.ndarray, np.ndarray]]


def table_digest() -> str:
    """First 12 hex digits of scene_table.py's sha256."""
    path = Path(__file__).resolve().parent / "scene_table.py"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def assets_dir() -> Path:
    """Folder with Ultralytics' sample photos."""
    import importlib.util
    spec = importlib.util.find_spec("ultralytics")   # no import: it would load torch
    if spec is None or spec.origin is None:
        raise FileNotFoundError("ultralytics is not installed; its sample photos are needed")
    return Path(spec.origin).resolve().parent / "assets"


# ---------------------------------------------------------------- rendering
def _tex(img: np.ndarray, w: int, h: int, tint: tuple[float, float, float], lo: float,
         hi: float) -> np.ndarray:
    """Tile a grey texture to w x h and tint it (BGR, 0..255 float)."""
    reps = (math.ceil(h / img.shape[0]), math.ceil(w / img.shape[1]))
    g = np.tile(img.astype(np.float32) / 255.0, reps)[:h, :w]
    g = lo + (hi - lo) * g
    return np.stack([g * c for c in tint], axis=-1)


def background(pond: Pond | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The static scene (field, bank, post, sign) and the water texture, both float32 BGR."""
    from skimage import data
    p = pond or PONDS["meadow"]
    rng = np.random.default_rng(SEED)
    bg = np.zeros((H, W, 3), np.float32)
    fe, wy = int(p.field_end * H), int(p.water_y * H)

    def tex(spec: tuple[str, tuple[float, float, float], float, float], w: int,
            h: int) -> np.ndarray:
        """A tinted texture layer from a scikit-image sample."""
        return _tex(getattr(data, spec[0])(), w, h, spec[1], spec[2], spec[3])

    bg[:fe] = tex(p.field_tex, W, fe)
    bank = tex(p.bank_tex, W, H - fe)
    bg[fe:] = bank
    edge = (fe + p.edge_amp * np.sin(np.arange(W) / p.edge_period)
            + rng.integers(-3, 4, W)).astype(int)
    for x in range(W):   # a ragged field edge: grass reaches a little into the bank
        bg[fe:edge[x], x] = bg[2 * fe - edge[x]:fe, x][::-1] if edge[x] > fe else bg[fe:fe, x]
    water = tex(p.water_tex, W * 2, H - wy)
    water = cv2.GaussianBlur(water, (0, 0), p.water_blur)
    if p.wall_px:        # the quay's face: darker, coarser stone just above the water
        bg[wy - p.wall_px:wy] = bg[wy - p.wall_px:wy] * 0.55
        cv2.line(bg, (0, wy - p.wall_px), (W, wy - p.wall_px), (205, 210, 210), 2)
    if p.reeds:
        _draw_reeds(bg, wy, rng)
    bg = bg.clip(0, 255).astype(np.uint8)
    # the sign: a white board with a red border on two posts
    sx, sy, sw, sh = (int(v * s) for v, s in zip(SIGN_ROI, (W, H, W, H), strict=True))
    for px in (sx + sw // 4, sx + 3 * sw // 4):
        cv2.rectangle(bg, (px - 3, sy + sh // 2), (px + 3, sy + sh), (40, 70, 100), -1)
    cv2.rectangle(bg, (sx + 4, sy + 4), (sx + sw - 4, sy + int(sh * 0.62)), (235, 235, 235), -1)
    cv2.rectangle(bg, (sx + 4, sy + 4), (sx + sw - 4, sy + int(sh * 0.62)), (30, 30, 200), 4)
    for i, word in enumerate(("DANGER", "DEEP WATER", "NO SWIM")):
        cv2.putText(bg, word, (sx + 14, sy + 26 + 20 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (30, 30, 190), 2, cv2.LINE_AA)
    # the lifebuoy post
    cx, cy, _, _ = _ring_geometry()
    cv2.rectangle(bg, (cx - 5, cy - 10), (cx + 5, int(0.56 * H)), (35, 60, 95), -1)
    cv2.line(bg, (cx, cy - 10), (cx, cy - 30), (30, 30, 30), 3)
    return bg.astype(np.float32), water


def _draw_reeds(bg: np.ndarray, wy: int, rng: np.random.Generator) -> None:
    """Clumps of reeds rising from the water line at both sides of the view, in place."""
    for x0, x1 in ((0.0, 0.10), (0.88, 1.0)):
        for _ in range(70):
            x = int(rng.uniform(x0, x1) * W)
            tall = int(rng.uniform(25, 70))
            lean = int(rng.integers(-8, 9))
            shade = float(rng.uniform(0.6, 1.1))
            colour = (40 * shade, 95 * shade, 85 * shade)
            cv2.line(bg, (x, wy + 4), (x + lean, wy - tall), colour, 2, cv2.LINE_AA)
            if rng.uniform() < 0.3:   # a brown seed head
                cv2.ellipse(bg, (x + lean, wy - tall), (2, 6), 0, 0, 360,
                            (30, 50, 80), -1, cv2.LINE_AA)


def _ring_geometry() -> tuple[int, int, int, int]:
    """Centre x, y and outer, inner radius of the lifebuoy in pixels."""
    x, y, w, h = LIFEBUOY_ROI
    cx, cy = int((x + w / 2) * W), int((y + h * 0.45) * H)
    return cx, cy, 34, 19


def draw_lifebuoy(img: np.ndarray) -> None:
    """An orange ring with four white bands and a rope, drawn in place."""
    cx, cy, ro, ri = _ring_geometry()
    mid, th = (ro + ri) // 2, ro - ri
    cv2.circle(img, (cx, cy), mid, (20, 90, 245), th, cv2.LINE_AA)
    for a in (45, 135, 225, 315):
        cv2.ellipse(img, (cx, cy), (mid, mid), 0, a - 12, a + 12, (245, 245, 245), th, cv2.LINE_AA)
    cv2.circle(img, (cx, cy), ro, (30, 60, 160), 1, cv2.LINE_AA)
    cv2.circle(img, (cx, cy), ri, (30, 60, 160), 1, cv2.LINE_AA)


def cutouts() -> Cuts:
    """Each source person as (BGR crop, alpha 0..1, body share), cut out with grabCut."""
    out = {}
    cv2.setRNGSeed(SEED)
    for key, (photo, (x1, y1, x2, y2), share) in SOURCES.items():
        img = cv2.imread(str(assets_dir() / photo))
        if img is None:
            raise FileNotFoundError(assets_dir() / photo)
        pad = 12
        X1, Y1 = max(0, x1 - pad), max(0, y1 - pad)
        X2, Y2 = min(img.shape[1], x2 + pad), min(img.shape[0], y2 + pad)
        f = min(1.0, 380.0 / (Y2 - Y1))    # never pasted taller than this: grabCut it small
        crop = cv2.resize(img[Y1:Y2, X1:X2], None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        mask = np.zeros(crop.shape[:2], np.uint8)
        rect = (int((x1 - X1) * f), int((y1 - Y1) * f), int((x2 - x1) * f),
                int((min(y2, Y2) - y1) * f))
        cv2.grabCut(crop, mask, rect, np.zeros((1, 65)), np.zeros((1, 65)), 4,
                    cv2.GC_INIT_WITH_RECT)
        fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(fg)
        if n > 1:  # keep the biggest blob
            fg = (lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
        ys, xs = np.nonzero(fg)
        crop, fg = crop[ys.min():ys.max() + 1, xs.min():xs.max() + 1], fg[ys.min():ys.max() + 1,
                                                                           xs.min():xs.max() + 1]
        alpha = cv2.GaussianBlur(fg.astype(np.float32), (5, 5), 0)
        out[key] = (crop, alpha, share)
    return out


def paste(frame: np.ndarray, cut: tuple[np.ndarray, np.ndarray, float], stature_m: float,
          x: float, y: float, depth_m: float, flip: bool,
          pond: Pond | None = None) -> list[int] | None:
    """Paste a person whose surface foot point is (x, y); return the visible box in pixels."""
    crop, alpha, share = cut
    ppm = (pond or PONDS["meadow"]).ppm
    body_px = stature_m * ppm(y)
    h = max(2, int(round(body_px * share)))
    w = max(2, int(round(crop.shape[1] * h / crop.shape[0])))
    c = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    a = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_AREA)
    if flip:
        c, a = c[:, ::-1], a[:, ::-1]
    foot_px = y * H + depth_m * ppm(y)           # feet on the bed, below the surface
    top = int(round(foot_px - body_px))
    left = int(round(x * W - w / 2))
    cut_row = int(round(y * H)) if depth_m > 0 else H   # water covers rows at or below it
    y0, y1 = max(0, top), min(H, top + h, cut_row)
    x0, x1 = max(0, left), min(W, left + w)
    if y1 - y0 < 4 or x1 - x0 < 4:
        return None
    cc = c[y0 - top:y1 - top, x0 - left:x1 - left]
    aa = a[y0 - top:y1 - top, x0 - left:x1 - left, None]
    frame[y0:y1, x0:x1] = aa * cc + (1 - aa) * frame[y0:y1, x0:x1]
    if depth_m > 0 and y1 == cut_row:            # a light ripple line where the body meets water
        cv2.line(frame, (x0, cut_row - 1), (x1, cut_row - 1), (200, 190, 170), 2, cv2.LINE_AA)
    return [x0, y0, x1, y1]


def render(scene: Scene, t: float, i: int, bg: np.ndarray, water: np.ndarray,
           cuts: Cuts) -> tuple[np.ndarray, dict[str, Any]]:
    """One frame of the scene at time t and its ground truth."""
    frame = bg.copy()
    pond = PONDS[scene.pond]
    wy = int(pond.water_y * H)
    off = int(20 * t) % W
    wave = (pond.wave_amp * np.sin(np.arange(H - wy)[:, None] / 5.0 + t * 2.0)).astype(np.float32)
    frame[wy:] = water[:, off:off + W] + wave[..., None]
    if scene.lifebuoy(t):
        draw_lifebuoy(frame)
    persons = []
    order = sorted(enumerate(scene.actors), key=lambda a: (a[1].at(t) or (0, 0, 0))[1])
    for k, actor in order:   # far (small y) first, near last
        pos = actor.at(t)
        if pos is None:
            continue
        box = paste(frame, cuts[actor.src], actor.stature_m, *pos, actor.flip, pond)
        if box is None:
            continue
        persons.append({"actor": k, "box": box, "foot": [round(pos[0], 4), round(pos[1], 4)],
                        "depth_m": round(pos[2], 3), "stature_m": actor.stature_m,
                        "zone": pond.zone(pos[1]),
                        "child": actor.stature_m <= 1.45})
    if scene.haze:        # overcast: flatter light, less contrast and colour
        frame = (1.0 - scene.haze) * frame + scene.haze * frame.mean()
    g = scene.gain(t)
    if g != 1.0:
        frame *= g
    if g < 0.8:
        frame[..., 0] *= 1.0 + (0.8 - g) * 0.3   # dusk is a little bluer
    dx, dy, ang = scene.shift(t)
    if dx or dy or ang:
        m = cv2.getRotationMatrix2D((W / 2, H / 2), ang, 1.0)
        m[:, 2] += np.array([dx * W, dy * H])
        frame = cv2.warpAffine(frame, m, (W, H), borderMode=cv2.BORDER_REFLECT)
    if scene.covered(t):
        frame = cv2.GaussianBlur(frame, (0, 0), 25) * 0.3 + np.array([20, 30, 45], np.float32)
    frame += NOISE[i % len(NOISE)]
    out = np.clip(frame, 0, 255).astype(np.uint8)
    truth = {"i": i, "t": round(t, 3), "persons": persons, "lifebuoy": scene.lifebuoy(t),
             "gain": round(g, 3), "covered": scene.covered(t), "shift": [dx, dy, ang]}
    return out, truth


def node_config(scene: Scene, model: Path) -> dict[str, Any]:
    """The node config matching the scene's geometry."""
    pond = PONDS[scene.pond]
    fe, wy = pond.field_end, pond.water_y

    def ref(x: float, y: float) -> dict[str, Any]:
        """A 1.75 m calibration pole standing at (x, y)."""
        head = round(y - ADULT_M * pond.ppm(y) / H, 4)
        return {"foot": [x, y], "head": [x, head], "height_m": ADULT_M}
    fast = scene.equipment_fast
    return {
        "node_id": "scene-" + scene.name.replace("_", "-"),
        "pond_id": "test-pond",
        "camera": {"source": f"{scene.name}.mp4", "fps": FPS},
        "model": {"path": str(model), "imgsz": 640,
                  "labels": {"person": ["person", "Normal", "Fall"]}},
        "zones": {"water": [[0.0, wy], [1.0, wy], [1.0, 1.0], [0.0, 1.0]],
                  "bank": [[0.0, fe], [1.0, fe], [1.0, wy], [0.0, wy]]},
        "stature": {"references": [ref(0.5, pond.ref_rows[0]), ref(0.3, pond.ref_rows[1])],
                    "child_max_m": 1.45},
        "rules": {"dwell_s": 1.0, "clear_s": 3.0, "submerged_s": 3.0},
        "equipment": [
            {"item": "lifebuoy", "roi": list(LIFEBUOY_ROI),
             "reference": f"refs/{scene.name}/lifebuoy.png",
             "missing_after_s": 5.0 if fast else 600.0, "check_every_s": 1.0 if fast else 30.0},
            {"item": "sign", "roi": list(SIGN_ROI), "reference": f"refs/{scene.name}/sign.png",
             "missing_after_s": 5.0 if fast else 600.0, "check_every_s": 1.0 if fast else 30.0},
        ],
        "mqtt": {"url": "mqtt://127.0.0.1:1883", "topic_prefix": "pondwatch/v1"},
        "outbox": f"var/{scene.name}.outbox.db",
    }


def make(scene: Scene, outdir: Path, model: Path, bg: np.ndarray, water: np.ndarray,
         cuts: Cuts) -> Path:
    """Write OUTDIR/<scene>.mp4, .yaml and .truth.json; return the video path."""
    video = outdir / f"{scene.name}.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (W, H))
    if not writer.isOpened():
        raise OSError(f"cannot write {video}")
    frames = []
    for i in range(int(round(scene.duration_s * FPS))):
        img, truth = render(scene, i / FPS, i, bg, water, cuts)
        writer.write(img)
        frames.append(truth)
    writer.release()
    cfg = node_config(scene, model)
    text = yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, default_flow_style=None)
    (outdir / f"{scene.name}.yaml").write_text(f"# {scene.about}\n{text}", encoding="utf-8")
    meta = {"scene": scene.name, "about": scene.about, "fps": FPS, "size": [W, H],
            "lifebuoy_roi": list(LIFEBUOY_ROI), "expect": scene.expect, "frames": frames}
    (outdir / f"{scene.name}.truth.json").write_text(json.dumps(meta, indent=0), encoding="utf-8")
    return video


def generate(outdir: str | Path, only: Sequence[str] | None = None,
             model: str | Path | None = None) -> list[Path]:
    """Make the chosen scenes (all by default) in outdir; return the video paths."""
    out = Path(outdir)
    (out / "var").mkdir(parents=True, exist_ok=True)
    chosen = scenes()
    if only:
        known = {s.name for s in chosen}
        bad = [n for n in only if n not in known]
        if bad:
            raise ValueError(f"unknown scene(s) {', '.join(bad)}; see --list")
        chosen = [s for s in chosen if s.name in only]
    digest = table_digest()
    if digest != TABLE_DIGEST:
        raise RuntimeError(f"scripts/scene_table.py changed: set TABLE_DIGEST = \"{digest}\" "
                           "in scripts/make_scenes.py (cached scene folders key on its hash)")
    model_path = Path(model).resolve() if model else REPO / "models" / "person.pt"
    bgs: Bgs = {name: background(PONDS[name]) for name in sorted({s.pond for s in chosen})}
    cuts = cutouts()
    return [make(s, out, model_path, *bgs[s.pond], cuts) for s in chosen]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; exit 0 on success, 2 on bad arguments."""
    p = argparse.ArgumentParser(
        description="Generate PondWatch test/demo clips and node configs.",
        epilog="Each scene gives OUTDIR/<scene>.mp4 (960x540, 5 fps), <scene>.yaml (node config) "
               "and <scene>.truth.json (per-frame person boxes, kit and camera state, expected "
               "events). The demo clip is child_to_bank: make_scenes.py --demo OUTDIR.")
    p.add_argument("outdir", nargs="?", help="output folder")
    p.add_argument("--only", nargs="+", metavar="NAME", help="only these scenes")
    p.add_argument("--demo", metavar="OUTDIR", help="only the demo clip child_to_bank, into OUTDIR")
    p.add_argument("--model", help="weights for the configs (default: repo models/person.pt)")
    p.add_argument("--list", action="store_true", help="list the scenes and exit")
    args = p.parse_args(argv)
    if args.list:
        for s in scenes():
            print(f"{s.name:26s} {s.duration_s:4.0f} s  {s.pond:7s} {s.about}")
        return 0
    outdir = args.demo or args.outdir
    if not outdir:
        p.error("give OUTDIR or --demo OUTDIR")
    try:
        videos = generate(outdir, ["child_to_bank"] if args.demo else args.only, args.model)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for v in videos:
        print(v)
    return 0


if __name__ == "__main__":
    sys.exit(main())
