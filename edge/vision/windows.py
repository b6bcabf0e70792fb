"""Where the detector looks: the zones' region, zoom windows on small candidates, merging.

The node's one detection step (`detect_people`), used by `run`, `replay` and `eval` alike:

1. the zones' bounding region (grown upward by a tall adult's calibrated height wherever he
   may stand in the zones, or to the top of the frame without a calibration, so a child's
   head near the camera is never cut off), cropped and scaled to the model input as Frigate
   does;
2. zoom windows around small, unsure candidates of pass 1, scaled to a small model input,
   so a distant person is seen at a higher resolution (only when pass 1 found something:
   an empty scene costs one inference);
3. cross-view non-maximum suppression, and per-object filters (area, aspect ratio).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from edge.config import NodeConfig
from edge.vision.geometry import stature_model
from edge.vision.types import TRACK_FLOOR, Candidate, Detection, Detector

Window = tuple[int, int, int, int]      # x0, y0, x1, y1 in frame pixels
Box = tuple[float, float, float, float]

TALL_M = 2.0            # the zones' region reaches this far above any foot in the zones
FULL_FRAME_SHARE = 0.85  # a region covering this much of the frame is the whole frame
MERGE_IOU = 0.5         # boxes from different views overlapping this much are one object
CONTAINED = 0.8         # a weaker box lying this much inside a stronger one is a part of it
ZOOM_MIN_CONF = 0.15    # weaker pass-1 boxes are noise, not someone to look at closer: an
                        # empty scene costs one inference


def zone_region(cfg: NodeConfig) -> Box:
    """Normalised bounding box of the zones, grown upward so a tall adult standing anywhere in
    them fits: by the calibrated height, else to the top of the frame (nothing is known about
    how tall someone near the camera looks)."""
    pts = list(cfg.zones.water) + list(cfg.zones.bank)
    x1, x2 = min(p[0] for p in pts), max(p[0] for p in pts)
    y1, y2 = min(p[1] for p in pts), max(p[1] for p in pts)
    model = stature_model(cfg)
    # pixels per metre grow linearly with the foot row, so the highest head of a tall adult is
    # at the far edge or at the near edge of the zones, whichever reaches higher
    top = 0.0 if model is None else min(y - max(model.height_px(y, TALL_M), 0.0)
                                        for y in (y1, y2))
    pad_x = 0.02
    return (max(0.0, x1 - pad_x), max(0.0, min(y1, top)), min(1.0, x2 + pad_x), y2)


def region_window(cfg: NodeConfig, w: int, h: int) -> Window:
    """The pass-1 window in pixels: the zones' region, or the whole frame when it is most of it."""
    if not cfg.model.zones_region:
        return (0, 0, w, h)
    x1, y1, x2, y2 = zone_region(cfg)
    if (x2 - x1) * (y2 - y1) >= FULL_FRAME_SHARE:
        return (0, 0, w, h)
    return (int(x1 * w), int(y1 * h), max(int(x1 * w) + 8, int(round(x2 * w))),
            max(int(y1 * h) + 8, int(round(y2 * h))))


def input_scale(win: Window, imgsz: int) -> float:
    """Model-input pixels per frame pixel when this window is letterboxed to imgsz."""
    return imgsz / max(win[2] - win[0], win[3] - win[1], 1)


def zoom_windows(cands: Sequence[Candidate], pass1: Window, cfg: NodeConfig, w: int,
                 h: int) -> list[Window]:
    """Square windows around small, unsure candidates, strongest first, within the budget."""
    m = cfg.model
    if m.zoom_windows == 0:
        return []
    scale = input_scale(pass1, m.imgsz)
    small = sorted((c for c in cands if m.zoom_below_conf > c.conf >= ZOOM_MIN_CONF
                    and (c.box[3] - c.box[1]) * scale < m.zoom_below_px),
                   key=lambda c: -c.conf)
    out: list[Window] = []
    side_min = m.zoom_imgsz // 2          # never blown up more than 2x
    for c in small:
        cx, cy = (c.box[0] + c.box[2]) / 2, (c.box[1] + c.box[3]) / 2
        if any(x0 <= cx < x1 and y0 <= cy < y1 for x0, y0, x1, y1 in out):
            continue                      # an earlier window already looks at it
        side = int(min(max(side_min, 3.0 * (c.box[3] - c.box[1])), min(w, h)))
        x0 = int(min(max(0, cx - side / 2), w - side))
        y0 = int(min(max(0, cy - side / 2), h - side))
        out.append((x0, y0, x0 + side, y0 + side))
        if len(out) >= m.zoom_windows:
            break
    return out


def iou_and_inside(a: Box, b: Box) -> tuple[float, float]:
    """IoU of a and b, and the share of a lying inside b."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a = max(1e-9, (a[2] - a[0]) * (a[3] - a[1]))
    area_b = max(1e-9, (b[2] - b[0]) * (b[3] - b[1]))
    return inter / (area_a + area_b - inter), inter / area_a


def merge(cands: Sequence[Candidate]) -> list[Candidate]:
    """Cross-view NMS: strongest first; drop boxes overlapping or lying inside a kept one."""
    kept: list[Candidate] = []
    for c in sorted(cands, key=lambda c: -c.conf):
        if all(_keep(c, k) for k in kept):
            kept.append(c)
    return kept


def _keep(c: Candidate, k: Candidate) -> bool:
    """False when weaker c is the same object as stronger k (overlap, or a part of it)."""
    iou, inside = iou_and_inside(c.box, k.box)
    return iou < MERGE_IOU and inside < CONTAINED


def passes_filters(box: Box, w: int, h: int, cfg: NodeConfig) -> bool:
    """Frigate-style per-object filters: area (share of the frame) and width/height in pixels."""
    m = cfg.model
    bw, bh = box[2] - box[0], box[3] - box[1]
    if bw <= 0 or bh <= 0:
        return False
    if not m.min_area <= bw * bh <= m.max_area:
        return False
    return m.min_ratio <= (bw * w) / (bh * h) <= m.max_ratio


def shift(c: Candidate, win: Window) -> Candidate:
    """A candidate found in a window, moved to frame pixels."""
    x0, y0 = win[0], win[1]
    b = c.box
    return replace(c, box=(b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0))


def clip_to(c: Candidate, w: int, h: int) -> Candidate:
    """Clip a pixel box to the frame."""
    b = np.clip(np.array(c.box), 0, [w, h, w, h])
    return replace(c, box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])))


def detect_people(cfg: NodeConfig, detector: Detector, frame: np.ndarray,
                  floor: float | None = None) -> list[Detection]:
    """The node's detection step: zones' region, zoom windows, merge, filters, label map.

    Returns every detection >= floor (default: the tracker's floor), strongest first;
    `run`, `replay` and `eval` all call this.
    """
    floor = min(TRACK_FLOOR, cfg.model.conf_at("water"), cfg.model.conf) if floor is None \
        else floor
    h, w = frame.shape[:2]
    win = region_window(cfg, w, h)
    crop = frame if win == (0, 0, w, h) else frame[win[1]:win[3], win[0]:win[2]]
    first = [clip_to(shift(c, win), w, h)
             for c in detector.predict([crop], cfg.model.imgsz, floor)[0]]
    zooms = zoom_windows(first, win, cfg, w, h)
    found = list(first)
    if zooms:
        crops = [frame[y0:y1, x0:x1] for x0, y0, x1, y1 in zooms]
        for zw, cands in zip(zooms, detector.predict(crops, cfg.model.zoom_imgsz, floor),
                             strict=True):
            found += [clip_to(shift(c, zw), w, h) for c in cands if not _cut_by(c, zw, w, h)]
    dets = [detector.label(c, w, h) for c in merge(found)]
    return [d for d in dets if passes_filters(d.box, w, h, cfg)]


def _cut_by(c: Candidate, win: Window, w: int, h: int) -> bool:
    """True when a zoom-window box touches an inner edge of its window (a cut-off part)."""
    x0, y0, x1, y1 = win
    bx1, by1, bx2, by2 = c.box
    side = x1 - x0
    m = 0.01 * side
    return ((bx1 <= m and x0 > 0) or (by1 <= m and y0 > 0)
            or (bx2 >= side - m and x1 < w) or (by2 >= (y1 - y0) - m and y1 < h))
