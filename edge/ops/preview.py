"""pondwatch-edge preview: zones, equipment boxes and a stature ruler drawn on one frame."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from edge.camera.sources import SourceError, open_source
from edge.config import NodeConfig
from edge.vision.geometry import StatureModel, stature_model
from edge.vision.snapshot import draw_zones, put_label

log = logging.getLogger(__name__)

EQUIPMENT_BGR = (255, 0, 255)
RULER_BGR = {"1.00 m": (255, 255, 0), "child": (0, 0, 255), "1.75 m": (0, 220, 0)}


def grab_frame(source: str | int, timeout_s: float = 10.0) -> np.ndarray:
    """The first frame of an image, video, folder or camera; SourceError if none comes."""
    src = open_source(source, fps_cap=0)
    try:
        item = src.read()
        if item is None and hasattr(src, "state"):  # a live camera: give it a few tries
            for _ in range(int(timeout_s)):
                item = src.read()
                if item is not None:
                    break
    finally:
        src.close()
    if item is None:
        raise SourceError(f"no frame from {source}")
    return item[0]


def draw_equipment(img: np.ndarray, cfg: NodeConfig) -> None:
    """Each equipment ROI as a labelled rectangle."""
    h, w = img.shape[:2]
    for eq in cfg.equipment:
        x, y, bw, bh = eq.roi
        p1 = (int(x * (w - 1)), int(y * (h - 1)))
        p2 = (int((x + bw) * (w - 1)), int((y + bh) * (h - 1)))
        cv2.rectangle(img, p1, p2, EQUIPMENT_BGR, max(2, w // 400))
        put_label(img, eq.item, (p1[0], p2[1] + 2), EQUIPMENT_BGR)


def ruler_rows(model: StatureModel, water_top: float) -> list[float]:
    """Foot rows for the ruler: spread from where people are at least 5 % tall to the bottom."""
    rows = [r for r in np.linspace(0.25, 0.98, 7) if model.height_px(float(r), 1.0) > 0.05]
    if water_top not in rows and 0.05 < water_top < 0.98:
        rows.append(water_top)
    return sorted(float(r) for r in rows)


def draw_ruler(img: np.ndarray, cfg: NodeConfig, model: StatureModel | None) -> None:
    """Bars of 1.0 m, child_max_m and 1.75 m people standing at several foot rows."""
    h, w = img.shape[:2]
    if model is None:
        put_label(img, "NO STATURE CALIBRATION: everyone is a possible child", (4, h // 2),
                  (0, 0, 255))
        return
    heights = {"1.00 m": 1.0, "child": cfg.stature.child_max_m, "1.75 m": 1.75}
    water_top = min((p[1] for p in cfg.zones.water), default=0.6)
    thick = max(2, w // 300)
    rows = ruler_rows(model, water_top)
    for n, row in enumerate(rows):  # one group of three bars per foot row, spread across
        centre = 0.1 + 0.8 * (n / max(1, len(rows) - 1))
        foot_px = int(row * (h - 1))
        for k, (name, metres) in enumerate(heights.items()):
            px = int((centre + (k - 1) * 0.014) * (w - 1))
            top_px = int(max(0.0, row - model.height_px(row, metres)) * (h - 1))
            cv2.line(img, (px, top_px), (px, foot_px), RULER_BGR[name], thick)
            cv2.line(img, (px - 4, top_px), (px + 4, top_px), RULER_BGR[name], thick)
        cv2.line(img, (int((centre - 0.03) * (w - 1)), foot_px),
                 (int((centre + 0.03) * (w - 1)), foot_px), (255, 255, 255), thick)
    for r in cfg.stature.references:
        p1 = (int(r.foot[0] * (w - 1)), int(r.foot[1] * (h - 1)))
        p2 = (int(r.head[0] * (w - 1)), int(r.head[1] * (h - 1)))
        cv2.line(img, p1, p2, (255, 255, 255), thick + 1)
        put_label(img, f"ref {r.height_m:.2f} m", (p2[0] + 4, p2[1]), (60, 60, 60))
    legend = f"ruler: 1.00 m (cyan), child <= {cfg.stature.child_max_m:.2f} m (red), 1.75 m (green)"
    put_label(img, legend, (4, h - 40), (40, 40, 40))


def render_preview(frame: np.ndarray, cfg: NodeConfig) -> np.ndarray:
    """A copy of frame with zones, equipment and the stature ruler."""
    img = frame.copy()
    draw_zones(img, cfg)
    draw_equipment(img, cfg)
    draw_ruler(img, cfg, stature_model(cfg))
    return img


def preview(cfg: NodeConfig, source: str | None, out: str) -> int:
    """Write the preview PNG for source (default: the configured camera); 0 on success."""
    spec = source if source is not None else cfg.camera.source
    try:
        frame = grab_frame(spec)
    except SourceError as exc:
        log.error("%s", exc)
        return 2
    ok, png = cv2.imencode(".png", render_preview(frame, cfg))
    try:
        if not ok:
            raise OSError("PNG encoding failed")
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(png.tobytes())
    except OSError as exc:
        log.error("cannot write %s: %s", out, exc)
        return 2
    log.info("preview written to %s", out)
    return 0
