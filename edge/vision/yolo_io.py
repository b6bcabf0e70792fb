"""An exported YOLO detector's input and output: letterbox, decoding and non-maximum suppression.

What Ultralytics does around the network, kept small so the ONNX and NCNN runtimes need neither
torch nor Ultralytics: the frame is scaled (keeping its aspect) and padded with grey 114 to a
multiple of the stride (`LetterBox`), the raw head output `(1, 4 + classes, anchors)` of
centre-size boxes and class scores is decoded, suppressed per class at IoU 0.7 and scaled
back to the frame. For a network whose head is fixed at its export size (NCNN), `head_output`
builds that raw output from the Detect head's per-scale maps, at any input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114     # Ultralytics' grey border
NMS_IOU = 0.7       # Ultralytics' predict default
MAX_DET = 300       # Ultralytics' predict default
MAX_WH = 7680.0     # class offset that keeps the boxes of different classes apart in one NMS
REG_MAX = 16        # DFL bins per box side in the Detect head (YOLOv8 / 11)


@dataclass(frozen=True)
class Letterbox:
    """How a frame became a model input: the scale and the left/top padding, in input pixels."""

    gain: float
    pad_x: float
    pad_y: float

    def to_frame(self, boxes: np.ndarray, w: int, h: int) -> np.ndarray:
        """Input-pixel x1y1x2y2 boxes as frame pixels, clipped to the w x h frame."""
        out = (boxes - np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y])) / self.gain
        clipped: np.ndarray = np.clip(out, 0, [w, h, w, h]).astype(np.float32)
        return clipped


def letterbox(img: np.ndarray, size: int, stride: int = 32, fixed: tuple[int, int] | None = None
              ) -> tuple[np.ndarray, Letterbox]:
    """The model input (1, 3, H, W) float32 RGB in 0..1 for a BGR image, and its Letterbox.

    Scaled so its longer side is `size` and padded (centred) to the next stride multiple, as
    Ultralytics' rect inference does; a model with a `fixed` (H, W) input is padded to that
    instead (a zoom window smaller than it stays at its own resolution, centred in grey).
    """
    h0, w0 = img.shape[:2]
    if fixed is not None:
        size = min(size, *fixed)
    r = min(size / h0, size / w0)
    w1, h1 = max(1, int(round(w0 * r))), max(1, int(round(h0 * r)))
    if fixed is None:
        dw, dh = (-w1) % stride / 2, (-h1) % stride / 2
    else:
        dw, dh = (fixed[1] - w1) / 2, (fixed[0] - h1) / 2
    if (w1, h1) != (w0, h0):
        img = cv2.resize(img, (w1, h1), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT,
                             value=(PAD_VALUE, PAD_VALUE, PAD_VALUE))
    blob = np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)
    return blob / np.float32(255.0), Letterbox(r, float(left), float(top))


def head_output(maps: list[tuple[np.ndarray, np.ndarray]], input_hw: tuple[int, int]
                ) -> np.ndarray:
    """The Detect head's (1, 4 + nc, anchors) output from its per-scale maps.

    `maps` holds, per scale (finest first), the box branch's (4 * REG_MAX, h, w) DFL logits and
    the class branch's (nc, h, w) logits for an input of `input_hw`; as Ultralytics' Detect:
    softmax over the bins, their expected value is the distance (in strides) from the cell
    centre to each side, and the class logits go through a sigmoid.
    """
    bins = np.arange(REG_MAX, dtype=np.float32)
    columns: list[np.ndarray] = []
    for box, logits in maps:
        h, w = box.shape[1:]
        stride = input_hw[0] / h
        d = box.reshape(4, REG_MAX, h * w).astype(np.float32)
        e = np.exp(d - d.max(axis=1, keepdims=True))
        dist = (e * bins[None, :, None]).sum(axis=1) / e.sum(axis=1)      # (4, h*w): l t r b
        gy, gx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
        ax, ay = gx.ravel(), gy.ravel()
        x1, y1, x2, y2 = ax - dist[0], ay - dist[1], ax + dist[2], ay + dist[3]
        xywh = np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]) * stride
        probs = 1 / (1 + np.exp(-logits.reshape(logits.shape[0], h * w).astype(np.float32)))
        columns.append(np.concatenate([xywh, probs]))
    return np.concatenate(columns, axis=1)[None]


def decode(raw: np.ndarray, floor: float, classes: list[int] | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Input-pixel x1y1x2y2 boxes, scores and classes of one image's raw output >= floor.

    Takes the Detect head's (1, 4 + nc, anchors) output (best class per anchor, as
    Ultralytics' non-multi-label NMS does) or an end-to-end head's (1, n, 6) x1y1x2y2 score
    class rows; only `classes` (None: all) are kept.
    """
    out = np.asarray(raw, dtype=np.float32)[0]
    if out.ndim != 2:
        raise ValueError(f"unexpected model output shape {np.shape(raw)}")
    if out.shape[1] == 6 and out.shape[0] != 6:             # end-to-end: already suppressed
        boxes, scores, cls = out[:, :4], out[:, 4], out[:, 5].astype(int)
    else:
        if out.shape[0] < 5:
            raise ValueError(f"unexpected model output shape {np.shape(raw)}")
        probs = out[4:]
        cls = probs.argmax(axis=0)
        scores = probs[cls, np.arange(probs.shape[1])]
        cx, cy, bw, bh = out[:4]
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    keep = scores >= floor
    if classes is not None:
        keep &= np.isin(cls, classes)
    return boxes[keep], scores[keep], cls[keep]


def nms(boxes: np.ndarray, scores: np.ndarray, cls: np.ndarray, iou: float = NMS_IOU,
        max_det: int = MAX_DET) -> np.ndarray:
    """Indices kept by greedy per-class NMS, strongest first (at most max_det)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=int)
    b = boxes + (cls.astype(np.float32) * MAX_WH)[:, None]
    area = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size and len(kept) < max_det:
        i, rest = int(order[0]), order[1:]
        kept.append(i)
        iw = (np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0])).clip(0)
        ih = (np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1])).clip(0)
        inter = iw * ih
        order = rest[inter / (area[i] + area[rest] - inter + 1e-9) <= iou]
    return np.array(kept, dtype=int)
