"""Letterbox, decoding and NMS of the torch-free run times (edge.vision.yolo_io)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.vision.yolo_io import REG_MAX, decode, head_output, letterbox, nms


def test_letterbox_pads_to_the_stride_like_ultralytics_rect_inference() -> None:
    """A 1920x1080 frame at 640 becomes 640x384: scaled by 1/3, 12 grey rows above and below."""
    img = np.full((1080, 1920, 3), 200, np.uint8)
    blob, lb = letterbox(img, 640)
    assert blob.shape == (1, 3, 384, 640) and blob.dtype == np.float32
    assert lb.gain == pytest.approx(1 / 3) and (lb.pad_x, lb.pad_y) == (0.0, 12.0)
    assert blob[0, :, 0, 0] == pytest.approx([114 / 255] * 3)      # grey border
    assert blob[0, :, 12, 0] == pytest.approx([200 / 255] * 3)     # the image starts at row 12


def test_letterbox_turns_bgr_into_rgb() -> None:
    """Channel 0 of the input is the image's red (its last BGR channel)."""
    img = np.zeros((64, 64, 3), np.uint8)
    img[..., 2] = 255
    blob, _ = letterbox(img, 64)
    assert blob[0, 0].min() == 1.0 and blob[0, 2].max() == 0.0


def test_a_small_window_stays_at_its_size_inside_a_fixed_input() -> None:
    """A 200 px zoom window asked at 320 on a 640x640 model: scaled 1.6x, centred in grey."""
    blob, lb = letterbox(np.zeros((200, 200, 3), np.uint8), 320, fixed=(640, 640))
    assert blob.shape == (1, 3, 640, 640)
    assert lb.gain == pytest.approx(1.6) and (lb.pad_x, lb.pad_y) == (160.0, 160.0)


def test_boxes_come_back_to_frame_pixels() -> None:
    """A box in input pixels maps back to where it was in the frame, clipped to it."""
    _, lb = letterbox(np.zeros((1080, 1920, 3), np.uint8), 640)
    box = np.array([[100 / 3, 12 + 300 / 3, 400 / 3, 12 + 900 / 3], [600, 0, 700, 400]])
    back = lb.to_frame(box, 1920, 1080)
    assert back[0] == pytest.approx([100, 300, 400, 900], abs=1e-3)
    assert back[1] == pytest.approx([1800, 0, 1920, 1080], abs=1e-3)


def raw_output(rows: list[tuple[float, float, float, float, list[float]]]) -> np.ndarray:
    """A Detect head's (1, 4 + nc, anchors) output from (cx, cy, w, h, class scores) rows."""
    return np.array([[cx, cy, w, h, *scores] for cx, cy, w, h, scores in rows],
                    np.float32).T[None]


def test_decode_takes_the_best_class_above_the_floor() -> None:
    """Centre-size boxes become corners; weak anchors and unwanted classes are dropped."""
    raw = raw_output([(50, 50, 20, 40, [0.9, 0.1]), (10, 10, 4, 4, [0.05, 0.02]),
                      (80, 80, 10, 10, [0.2, 0.6])])
    boxes, scores, cls = decode(raw, 0.1)
    assert boxes.tolist() == [[40, 30, 60, 70], [75, 75, 85, 85]]
    assert scores.tolist() == pytest.approx([0.9, 0.6]) and cls.tolist() == [0, 1]
    assert decode(raw, 0.1, classes=[0])[2].tolist() == [0]


def test_decode_reads_an_end_to_end_head_and_refuses_odd_shapes() -> None:
    """(1, n, 6) rows are x1y1x2y2 score class already; a 1-D output is an error."""
    raw = np.array([[[1, 2, 3, 4, 0.8, 1], [0, 0, 1, 1, 0.05, 0]]], np.float32)
    boxes, scores, cls = decode(raw, 0.1)
    assert boxes.tolist() == [[1, 2, 3, 4]] and cls.tolist() == [1]
    with pytest.raises(ValueError, match="output shape"):
        decode(np.zeros((1, 8400)), 0.1)


def test_head_maps_become_the_detect_heads_output() -> None:
    """Per-scale DFL and class logits as Ultralytics' Detect decodes them: a cell's peaked bins
    give its side distances in strides from the cell centre; logit 0 is score 0.5; the finer
    scale's anchors come first."""
    fine = np.full((4 * REG_MAX, 2, 4), -50.0, np.float32)      # 64x128 input at stride 32
    coarse = np.full((4 * REG_MAX, 1, 2), -50.0, np.float32)    # stride 64
    for side, bins in enumerate((1, 2, 3, 4)):                  # l t r b of cell (y 1, x 2)
        fine[side * REG_MAX + bins, 1, 2] = 50.0
    coarse[[0, REG_MAX, 2 * REG_MAX, 3 * REG_MAX]] = 50.0       # zero distances
    logits = [np.full((2, 2, 4), -20.0, np.float32), np.full((2, 1, 2), -20.0, np.float32)]
    logits[0][1, 1, 2] = 0.0
    raw = head_output([(fine, logits[0]), (coarse, logits[1])], (64, 128))
    assert raw.shape == (1, 4 + 2, 8 + 2)
    cell = raw[0, :, 1 * 4 + 2]
    # centre (2.5, 1.5) strides; x1 = 2.5 - 1, y1 = 1.5 - 2, x2 = 2.5 + 3, y2 = 1.5 + 4
    assert cell[:4] == pytest.approx(np.array([3.5, 2.5, 4, 6]) * 32, abs=1e-3)
    assert cell[4:] == pytest.approx([0, 0.5], abs=1e-6)
    assert raw[0, :4, 9] == pytest.approx([96, 32, 0, 0], abs=1e-3)
    boxes, scores, cls = decode(raw, 0.25)
    assert len(boxes) == 1 and boxes[0] == pytest.approx([48, -16, 176, 176], abs=1e-3)
    assert scores.tolist() == pytest.approx([0.5]) and cls.tolist() == [1]


def test_nms_keeps_the_strongest_of_overlapping_boxes_per_class() -> None:
    """Two boxes of one class overlapping IoU 0.82: one kept; the same box of another class
    and a box elsewhere stay."""
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [0, 0, 10, 10], [50, 50, 60, 60],
                      [0, 0, 10, 18]], np.float32)
    scores = np.array([0.5, 0.9, 0.4, 0.3, 0.8])
    cls = np.array([0, 0, 1, 0, 0])
    assert nms(boxes, scores, cls).tolist() == [1, 4, 2, 3]   # IoU(1, 4) = 0.61 < 0.7
    assert nms(boxes, scores, cls, max_det=2).tolist() == [1, 4]
    assert nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)).tolist() == []
