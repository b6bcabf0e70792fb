"""A still person-like thing in a zone is learned as background; a child walking in is not."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.camera.sources import open_source
from edge.config import NodeConfig, load_config
from edge.rules.pipeline import Pipeline
from edge.vision.still import StillThings
from tests.edge.conftest import T0

FPS = 5
LEARN_S = 10.0
STILL_S = 25.0           # still scene (with the figure) before the child's clip starts
FIGURE_AT = (0.62, 0.56)  # foot of the figure on the bank (the child walks in at x ~0.18)


def figure(assets: Path) -> np.ndarray:
    """A real standing person cut from bus.jpg (a poster, a scarecrow: person-shaped)."""
    bus = cv2.imread(str(assets / "bus.jpg"))
    return bus[384:907, 46:216]


def paste(frame: np.ndarray, fig: np.ndarray) -> np.ndarray:
    """The frame with the figure standing at FIGURE_AT, 0.4 of the frame tall."""
    h, w = frame.shape[:2]
    fh = int(0.4 * h)
    fw = int(fh * fig.shape[1] / fig.shape[0])
    x0, y1 = int(FIGURE_AT[0] * w), int(FIGURE_AT[1] * h)
    out = frame.copy()
    out[y1 - fh:y1, x0:x0 + fw] = cv2.resize(fig, (fw, fh), interpolation=cv2.INTER_AREA)
    return out


def clip(path: Path, fps: float) -> list[np.ndarray]:
    """All frames of a clip at the node's rate."""
    src = open_source(str(path), fps)
    out = []
    while (item := src.read()) is not None:
        out.append(item[0])
    src.close()
    return out


def run_scene(cfg: NodeConfig, detector: Any, frames: list[np.ndarray]
              ) -> tuple[list[tuple[float, str]], list[tuple[float, bool, bool]]]:
    """Events (t, type) and per frame (t, idle, detector ran) of the pipeline with its gate."""
    detector.reset()
    pipe = Pipeline(cfg, detector, snapshots=False)
    events, states = [], []
    for i, f in enumerate(frames):
        t = i / FPS
        before = pipe.stats.detected_frames
        events += [(t, em.event.type.value)
                   for em in pipe.process(f, t, T0 + timedelta(seconds=t))]
        states.append((t, pipe.stats.idle, pipe.stats.detected_frames > before))
    return events, states


@pytest.fixture(scope="module")
def still_then_child(scenes_dir: Path, assets: Path, detector: Any
                     ) -> tuple[NodeConfig, list[tuple[float, str]],
                                list[tuple[float, bool, bool]], float]:
    """child_to_bank with a person-shaped figure on the bank: STILL_S s of the empty first
    frame (with sensor noise), then the clip in which a child walks onto the bank."""
    cfg = load_config(scenes_dir / "child_to_bank.yaml")
    cfg = cfg.model_copy(update={"equipment": [], "rules": cfg.rules.model_copy(
        update={"still_learn_s": LEARN_S}), "camera": cfg.camera.model_copy(
        update={"fps": FPS})})
    fig = figure(assets)
    child = [paste(f, fig) for f in clip(scenes_dir / "child_to_bank.mp4", FPS)]
    rng = np.random.default_rng(7)
    empty = child[0]
    still = [np.clip(empty + rng.normal(0, 2, empty.shape), 0, 255).astype(np.uint8)
             for _ in range(int(STILL_S * FPS))]
    truth = json.loads((scenes_dir / "child_to_bank.truth.json").read_text())
    on_bank = min(f["t"] for f in truth["frames"]
                  if any(p["zone"] == "bank" for p in f["persons"]))
    events, states = run_scene(cfg, detector, still + child)
    return cfg, events, states, STILL_S + on_bank


def test_the_figure_is_a_person_to_the_model(still_then_child: Any) -> None:
    """The premise: without learning, the figure keeps the gate awake (it is detected)."""
    _, _, states, _ = still_then_child
    assert not any(idle for t, idle, _ in states if t < LEARN_S)


def test_a_still_figure_is_learned_and_the_detector_idles(still_then_child: Any) -> None:
    """Within learn_s + the gate's quiet period + 1 s the node is idle, and then runs the
    detector at idle_fps only (not at 5 fps) until the child's clip moves."""
    cfg, _, states, _ = still_then_child
    settled = [s for s in states if LEARN_S + 4.0 <= s[0] < STILL_S]
    assert settled and all(idle for _, idle, _ in settled)
    runs = sum(ran for _, _, ran in settled)
    assert runs <= (STILL_S - LEARN_S - 4.0) * cfg.rules.idle_fps + 1


def test_a_child_walking_in_is_still_raised_within_the_dwell(still_then_child: Any) -> None:
    """The child who walks onto the bank past the learned figure: child_near_water within
    dwell + 1 s of the first frame on the bank, and the figure itself raises nothing new after
    it was learned."""
    cfg, events, _, on_bank = still_then_child
    child = [t for t, kind in events if kind == "child_near_water"]
    assert child and child[0] - on_bank <= cfg.rules.dwell_s + 1.0, events
    # once learned, the figure is background: at most the end of what it raised before
    assert [k for t, k in events if LEARN_S <= t < STILL_S and k != "event_end"] == [], events


def test_a_learned_thing_that_changes_is_forgotten() -> None:
    """Unchanged for learn_s: learned; its picture changes (someone in front): not learned,
    and it has to stay unchanged for learn_s again."""
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    box = (0.4, 0.2, 0.5, 0.7)
    still = StillThings(learn_s=10.0)
    for t in range(12):
        still.observe(frame, [box], float(t))
    assert still.learned(frame, box, 11.0)
    assert not still.learned(frame, (0.1, 0.2, 0.2, 0.7), 11.0)     # elsewhere
    other = frame.copy()
    other[48:168, 128:160] = rng.integers(0, 255, (120, 32, 3), dtype=np.uint8)
    assert not still.learned(other, box, 12.0)
    still.observe(other, [box], 12.0)
    assert not still.learned(other, box, 13.0)
    assert not StillThings(learn_s=0).learned(frame, box, 100.0)
