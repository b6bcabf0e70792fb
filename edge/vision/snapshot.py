"""Annotated snapshots: zones, boxes, track ids and heights drawn with OpenCV, as JPEG."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge.config import NodeConfig
from protocol.limits import MAX_SNAPSHOT_BYTES

log = logging.getLogger(__name__)

WATER_BGR = (255, 140, 0)
BANK_BGR = (0, 200, 255)
CHILD_BGR = (0, 0, 255)
ADULT_BGR = (0, 200, 0)
OTHER_BGR = (200, 200, 200)


@dataclass(frozen=True)
class Mark:
    """One box to draw: normalised box, label text and whether it is a child."""

    box: tuple[float, float, float, float]
    label: str
    child: bool | None = None


def _px(pt: Sequence[float], w: int, h: int) -> tuple[int, int]:
    """Normalised point → pixel."""
    return int(round(pt[0] * (w - 1))), int(round(pt[1] * (h - 1)))


def draw_polygon(img: np.ndarray, poly: Sequence[Sequence[float]], color: tuple[int, int, int],
                 label: str, alpha: float = 0.18) -> None:
    """Fill a normalised polygon lightly, outline it and name it."""
    if len(poly) < 3:
        return
    h, w = img.shape[:2]
    pts = np.array([_px(p, w, h) for p in poly], dtype=np.int32)
    overlay = img.copy()
    cv2.fillPoly(overlay, [pts], color)
    cv2.addWeighted(overlay, alpha, img, 1 - alpha, 0, dst=img)
    cv2.polylines(img, [pts], True, color, max(1, w // 400), cv2.LINE_AA)
    x, y = pts.min(axis=0)
    put_label(img, label, (int(x) + 4, int(y) + 4), color)


def put_label(img: np.ndarray, text: str, org: tuple[int, int],
              color: tuple[int, int, int]) -> None:
    """White text on a coloured band with its top-left corner at org (ASCII only)."""
    h, w = img.shape[:2]
    scale = max(0.4, w / 1600)
    thick = max(1, int(scale * 2))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x = min(max(0, org[0]), max(0, w - tw - 4))
    y = min(max(0, org[1]), max(0, h - th - base - 4))
    cv2.rectangle(img, (x, y), (x + tw + 4, y + th + base + 4), color, -1)
    cv2.putText(img, text, (x + 2, y + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), thick, cv2.LINE_AA)


def draw_zones(img: np.ndarray, cfg: NodeConfig) -> None:
    """The water and bank polygons."""
    draw_polygon(img, cfg.zones.water, WATER_BGR, "water")
    if cfg.zones.bank:
        draw_polygon(img, cfg.zones.bank, BANK_BGR, "bank")


def draw_marks(img: np.ndarray, marks: Iterable[Mark]) -> None:
    """Boxes with their labels; children red, adults green, unknown grey."""
    h, w = img.shape[:2]
    for m in marks:
        color = OTHER_BGR if m.child is None else CHILD_BGR if m.child else ADULT_BGR
        p1, p2 = _px(m.box[:2], w, h), _px(m.box[2:], w, h)
        cv2.rectangle(img, p1, p2, color, max(2, w // 320))
        cv2.circle(img, ((p1[0] + p2[0]) // 2, p2[1]), max(3, w // 200), color, -1)
        put_label(img, m.label, (p1[0], p1[1] - max(14, h // 30)), color)


def annotate(frame: np.ndarray, cfg: NodeConfig, marks: Iterable[Mark],
             caption: str | None = None) -> np.ndarray:
    """A copy of frame with zones, marks and an optional caption drawn."""
    img = frame.copy()
    draw_zones(img, cfg)
    draw_marks(img, marks)
    if caption:
        put_label(img, caption, (4, 4), (40, 40, 40))
    return img


def encode_jpeg(img: np.ndarray, limit: int = MAX_SNAPSHOT_BYTES) -> bytes:
    """JPEG no larger than limit: lower the quality, then the size, until it fits;
    ValueError when it cannot fit or the image is no JPEG can hold (OpenCV's own error)."""
    work = img
    while True:
        for quality in (85, 70, 55, 40):
            try:
                ok, buf = cv2.imencode(".jpg", work, [cv2.IMWRITE_JPEG_QUALITY, quality])
            except cv2.error as exc:
                raise ValueError(f"cannot encode a {img.shape} image as JPEG: {exc}") from exc
            if ok and len(buf) <= limit:
                return bytes(buf)
        h, w = work.shape[:2]
        if w < 64 or h < 64:
            raise ValueError(f"cannot fit a snapshot into {limit} bytes")
        work = cv2.resize(work, (max(1, w * 3 // 4), max(1, h * 3 // 4)),
                          interpolation=cv2.INTER_AREA)
        log.debug("snapshot shrunk to %dx%d to fit %d bytes", work.shape[1], work.shape[0], limit)


def snapshot(frame: np.ndarray, cfg: NodeConfig, marks: Iterable[Mark],
             caption: str | None = None, limit: int = MAX_SNAPSHOT_BYTES) -> bytes:
    """The annotated JPEG attached to an event; ValueError when the frame cannot become one
    (OpenCV cannot draw on it, or no JPEG of it fits)."""
    try:
        img = annotate(frame, cfg, marks, caption)
    except cv2.error as exc:
        raise ValueError(f"cannot draw on a {frame.shape} frame: {exc}") from exc
    return encode_jpeg(img, limit)
