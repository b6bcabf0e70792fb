"""Enrolment: median references of the rescue kit and the whole view, from a source or frames."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.camera.health import WORK_W, blindness, frame_stats
from edge.camera.sources import SourceError, is_live, open_source
from edge.config import NodeConfig
from edge.errors import EdgeError
from edge.site.equipment import reference_path, ring_mask, roi_px, view_reference_path
from protocol.payloads import utc_now

log = logging.getLogger(__name__)

ENROL_FPS = 2.0          # enrol samples at most this many frames per second


class EnrolError(EdgeError, ValueError):
    """The frames cannot serve as references (none, mixed sizes, too dark, covered)."""


def _collect(source: str | int, frames: int) -> list[np.ndarray]:
    """Up to `frames` frames from the source, sampled at most ENROL_FPS."""
    live = is_live(source)
    src = open_source(source, ENROL_FPS)
    out: list[np.ndarray] = []
    misses = 0
    try:
        while len(out) < frames and misses < 3 * frames:
            item = src.read()
            if item is None:
                if not live:
                    break
                misses += 1
                continue
            out.append(item[0])
    finally:
        src.close()
    return out


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """A pretty UTF-8 JSON sidecar."""
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def enrol(cfg: NodeConfig, config_path: str | Path, source: str | int | None = None,
          frames: int = 15) -> int:
    """pondwatch-edge enrol: median references per item, sidecars, view and preview; exit code."""
    spec_src = source if source is not None else cfg.camera.source
    try:
        shots = _collect(spec_src, max(1, frames))
    except SourceError as exc:
        print(f"无法打开画面来源 / cannot open source: {exc}", file=sys.stderr)
        return 1
    try:
        message = enrol_frames(cfg, config_path, shots, str(spec_src))
    except EnrolError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(message)
    return 0


def enrol_frames(cfg: NodeConfig, config_path: str | Path, shots: list[np.ndarray],
                 source_label: str) -> str:
    """Write the per-item and whole-view references from frames; return a summary line.

    Used by `enrol` and by the running node's remote re-enrol command.
    """
    spec_src = source_label
    if not shots or len({s.shape for s in shots}) != 1:
        raise EnrolError(f"没有可用画面或尺寸不一 / no usable frames from {spec_src}")
    if len(shots) < 3:
        log.warning("only %d frame(s): a passer-by would be enrolled too", len(shots))
    median = np.median(np.stack(shots), axis=0).astype(np.uint8)
    stats = frame_stats(median)
    bad = blindness(stats)
    if bad:
        raise EnrolError(f"画面不可用（{bad}），无法登记 / cannot enrol: the view is {bad}")
    now = utc_now().isoformat()
    h, w = median.shape[:2]
    written: list[tuple[str, np.ndarray]] = []
    for spec in cfg.equipment:
        path = reference_path(spec, config_path)
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        x0, y0, x1, y1 = roi_px(spec.roi, w, h)
        crop = median[y0:y1, x0:x1]
        cv2.imwrite(str(path), crop)
        _write_json(path.with_suffix(".json"), {
            "item": spec.item, "roi": list(spec.roi), "enrolled_at": now, "frames": len(shots),
            "source": str(spec_src), "frame_size": [w, h],
            "light_luma": round(float(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).mean()), 1),
            "ring_px": int(np.count_nonzero(ring_mask(crop)))})
        written.append((spec.item, crop))
        log.info("enrolled %s -> %s", spec.item, path)
    view = view_reference_path(cfg, config_path)
    assert view is not None
    view.parent.mkdir(parents=True, exist_ok=True)
    size = (WORK_W * 2, round(h * WORK_W * 2 / w))
    small = cv2.resize(median, size, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(view), small)
    _write_json(view.with_suffix(".json"), {"enrolled_at": now, "frames": len(shots),
                                            "source": str(spec_src), "frame_size": [w, h],
                                            "light_luma": round(stats.luma, 1),
                                            "detail": round(stats.detail, 2)})
    preview = view.parent / "enrol-preview.png"
    cv2.imwrite(str(preview), _preview(median, cfg, written))
    return f"已登记 {len(written)} 件设备 / enrolled {len(written)} item(s); preview: {preview}"


def _preview(median: np.ndarray, cfg: NodeConfig, crops: list[tuple[str, np.ndarray]]
             ) -> np.ndarray:
    """The median frame with each ROI outlined, and a strip of the enrolled crops below."""
    img = median.copy()
    h, w = img.shape[:2]
    for spec in cfg.equipment:
        x0, y0, x1, y1 = roi_px(spec.roi, w, h)
        cv2.rectangle(img, (x0, y0), (x1, y1), (255, 0, 255), 2)
        cv2.putText(img, spec.item, (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 0, 255), 1, cv2.LINE_AA)
    strip_h = 160
    strip = np.full((strip_h, w, 3), 40, np.uint8)
    x = 8
    for name, crop in crops:
        s = min((strip_h - 28) / crop.shape[0], 3.0)
        c = cv2.resize(crop, (max(1, int(crop.shape[1] * s)), max(1, int(crop.shape[0] * s))))
        if x + c.shape[1] > w:
            break
        strip[4:4 + c.shape[0], x:x + c.shape[1]] = c
        cv2.putText(strip, name, (x, strip_h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 255, 255), 1, cv2.LINE_AA)
        x += c.shape[1] + 12
    return np.vstack([img, strip])
