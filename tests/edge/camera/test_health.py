"""Camera health: each fault reason on real frames, debounce, recovery and vouching."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.camera.health import (
    CameraHealth,
    blindness,
    frame_stats,
    load_view_reference,
    view_reference_meta,
    view_shift,
)
from edge.config import NodeConfig, load_config
from protocol.payloads import EventType


@pytest.fixture(scope="module")
def clip(scenes_dir: Path) -> list[np.ndarray]:
    """The first 30 frames of the empty pond scene."""
    cap = cv2.VideoCapture(str(scenes_dir / "empty_static.mp4"))
    out = []
    while len(out) < 30:
        ok, frame = cap.read()
        assert ok
        out.append(frame)
    cap.release()
    return out


@pytest.fixture()
def cfg(scenes_dir: Path) -> NodeConfig:
    """A scene config (camera.stall_s = 10 s)."""
    return load_config(scenes_dir / "empty_static.yaml")


def test_frame_stats_separate_good_dark_covered(clip: list[np.ndarray]) -> None:
    """A normal view is neither dark nor covered; dimmed or blurred versions are."""
    good = clip[0]
    assert blindness(frame_stats(good)) is None
    assert blindness(frame_stats((good * 0.1).astype(np.uint8))) == "too_dark"
    smeared = cv2.GaussianBlur(good, (0, 0), 20)
    assert blindness(frame_stats(smeared)) == "covered"
    assert blindness(frame_stats(cv2.cvtColor(good, cv2.COLOR_BGR2GRAY))) is None


def test_no_frames_then_recovery(cfg: NodeConfig, clip: list[np.ndarray]) -> None:
    """Nothing for stall_s: fault at once; frames again for ok_after_s: camera_ok."""
    ch = CameraHealth(cfg, clock=lambda: 0.0)
    assert ch.check(clip[0], 0.0, 1000.0) == []
    assert ch.check(None, 5.0) == [] and ch.vouching
    (fault,) = ch.check(None, 10.0, datetime(2026, 6, 1, tzinfo=UTC))
    assert fault.type == EventType.CAMERA_FAULT and fault.reason == "no_frames"
    assert fault.ts == datetime(2026, 6, 1, tzinfo=UTC)
    assert not ch.vouching and ch.state() == "fault:no_frames"
    assert ch.check(None, 30.0) == []            # one event per episode
    assert ch.check(clip[1], 31.0) == []
    assert ch.check(clip[2], 33.0) == []
    (ok,) = ch.check(clip[3], 34.0)
    assert ok.type == EventType.CAMERA_OK and ok.ref == fault.id and ch.vouching


def test_no_frame_ever(cfg: NodeConfig) -> None:
    """A camera that never delivers is a fault after stall_s from the first check."""
    ch = CameraHealth(cfg)
    assert ch.check(None, 100.0) == []
    assert [e.reason for e in ch.check(None, 110.0)] == ["no_frames"]


def test_frozen(cfg: NodeConfig, clip: list[np.ndarray]) -> None:
    """The same picture for frozen_s: camera_fault(frozen); live frames: ok again."""
    ch = CameraHealth(cfg, frozen_s=10.0, fault_after_s=3.0)
    events = []
    for k in range(70):                      # 14 s of one picture at 5 fps
        events += ch.check(clip[0].copy(), k / 5)
    assert [e.reason for e in events] == ["frozen"]
    assert events[0].ts.tzinfo is not None
    for k, frame in enumerate(clip):
        events += ch.check(frame, 14 + k / 5)
    assert [e.type for e in events] == [EventType.CAMERA_FAULT, EventType.CAMERA_OK]


def test_noisy_live_view_is_not_frozen(cfg: NodeConfig, clip: list[np.ndarray]) -> None:
    """A static scene with sensor noise is live, not frozen."""
    ch = CameraHealth(cfg, frozen_s=2.0)
    events = []
    for k in range(60):
        events += ch.check(clip[k % 2 * 10], k / 5)  # two different noisy frames alternate
    assert events == [] and ch.vouching


def test_short_glitch_is_debounced(cfg: NodeConfig, clip: list[np.ndarray]) -> None:
    """Dark for 2 s (below fault_after_s = 3 s): nothing."""
    ch = CameraHealth(cfg)
    events = []
    for k in range(30):
        frame = clip[k] if not 10 <= k < 20 else (clip[k] * 0.05).astype(np.uint8)
        events += ch.check(frame, k / 5)
    assert events == []


def test_view_moved_needs_reference(cfg: NodeConfig, clip: list[np.ndarray]) -> None:
    """A shifted view is view_moved against a reference; without one it cannot be judged."""
    m = np.float32([[1, 0, 50], [0, 1, 25]])
    shifted = [cv2.warpAffine(f, m, (960, 540), borderMode=cv2.BORDER_REFLECT) for f in clip]
    with_ref = CameraHealth(cfg, reference=clip[0], view_every_s=1.0)
    without = CameraHealth(cfg)
    a, b = [], []
    for k, frame in enumerate(shifted):
        a += with_ref.check(frame, k / 5)
        b += without.check(frame, k / 5)
    assert [e.reason for e in a] == ["view_moved"] and b == []
    shift = with_ref.last_shift
    assert shift is not None and shift[0] == pytest.approx(56 / 960, abs=0.01)


def test_small_shake_is_not_moved(cfg: NodeConfig, clip: list[np.ndarray]) -> None:
    """A 4 px wobble (0.4 % of the width) stays ok."""
    m = np.float32([[1, 0, 4], [0, 1, 2]])
    ch = CameraHealth(cfg, reference=clip[0], view_every_s=0.2)
    events = []
    for k, frame in enumerate(clip):
        events += ch.check(cv2.warpAffine(frame, m, (960, 540)) if k % 2 else frame, k / 5)
    assert events == []


def test_view_shift_unsure_on_blank(clip: list[np.ndarray]) -> None:
    """Against a featureless picture the shift cannot be measured."""
    small = frame_stats(clip[0]).small
    assert view_shift(small, np.full_like(small, 90)) is None


def test_reference_from_file(tmp_path: Path, cfg: NodeConfig, clip: list[np.ndarray]) -> None:
    """A view.png reference loads; a missing file means no view check; sidecar read safely."""
    p = tmp_path / "view.png"
    cv2.imwrite(str(p), clip[0])
    assert load_view_reference(p) is not None
    assert CameraHealth(cfg, reference=p).reference is not None
    assert CameraHealth(cfg, reference=tmp_path / "none.png").reference is None
    assert view_reference_meta(p) == {}
    p.with_suffix(".json").write_text('{"light_luma": 88}')
    assert view_reference_meta(p) == {"light_luma": 88}
    p.with_suffix(".json").write_text("[1]")
    assert view_reference_meta(p) == {}


def test_clock_used_when_no_time(cfg: NodeConfig, clip: list[np.ndarray]) -> None:
    """Without t the injected clock gives the time."""
    now = [0.0]
    ch = CameraHealth(cfg, clock=lambda: now[0])
    ch.check(clip[0])
    now[0] = 10.0
    assert [e.reason for e in ch.check(None)] == ["no_frames"]


# ---------------------------------------------------------------- judged by the scene's baseline
def clear_view(frame: np.ndarray) -> np.ndarray:
    """A softer camera than the generated clip's: detail ~6.0 (the issue's clear view)."""
    return cv2.GaussianBlur(frame, (0, 0), 2.1)


def dim_smear(frame: np.ndarray) -> np.ndarray:
    """The issue's dim, smeared cover: mean luma ~25.6, detail ~3.1."""
    return np.clip(cv2.GaussianBlur(frame, (0, 0), 7.3) * 0.295, 0, 255).astype(np.uint8)


def play(ch: CameraHealth, frames: list[np.ndarray], t0: float, fps: float = 5.0
         ) -> list[tuple[float, str | None]]:
    """(t, reason) of the events of frames played from t0."""
    out = []
    for k, f in enumerate(frames):
        t = t0 + k / fps
        out += [(t, e.reason) for e in ch.check(f, t)]
    return out


def test_the_dim_smeared_cover_is_what_the_issue_measured(clip: list[np.ndarray]) -> None:
    """The frames below are the issue's case, and absolute thresholds miss it."""
    clear, cover = frame_stats(clear_view(clip[0])), frame_stats(dim_smear(clip[0]))
    assert clear.detail == pytest.approx(6.0, abs=0.3)
    assert cover.luma == pytest.approx(25.6, abs=0.6)
    assert cover.detail == pytest.approx(3.1, abs=0.3)
    assert blindness(cover) is None


def test_dim_smeared_cover_is_covered_within_10_s_without_enrolment(
        cfg: NodeConfig, clip: list[np.ndarray]) -> None:
    """Against the view learned at start-up: camera_fault(covered) within 10 s, then ok."""
    ch = CameraHealth(cfg)
    clear = [clear_view(f) for f in clip]
    events = play(ch, clear * 2, 0.0)
    events += play(ch, [dim_smear(f) for f in clip], 12.0)
    events += play(ch, clear, 18.0)
    assert [r for _, r in events][:1] == ["covered"] and events[0][0] - 12.0 <= 10.0
    assert len(events) == 2 and events[1][1] == "recovered from covered"


def test_with_an_enrolled_view_the_cover_is_covered_not_moved(
        cfg: NodeConfig, clip: list[np.ndarray]) -> None:
    """The enrolled view does not turn a cover into view_moved (the wrong reason)."""
    ch = CameraHealth(cfg, reference=clear_view(clip[0]), view_every_s=1.0)
    events = play(ch, [clear_view(f) for f in clip] * 2, 0.0)
    events += play(ch, [dim_smear(f) for f in clip], 12.0)
    assert [r for _, r in events] == ["covered"]


def test_moved_view_without_enrolment(cfg: NodeConfig, clip: list[np.ndarray]) -> None:
    """Knocked 5 % and 3° after start-up: view_moved against the start-up view."""
    m = cv2.getRotationMatrix2D((480, 270), 3.0, 1.0)
    m[:, 2] += (48, 20)
    knocked = [cv2.warpAffine(f, m, (960, 540), borderMode=cv2.BORDER_REFLECT) for f in clip]
    ch = CameraHealth(cfg, view_every_s=1.0)
    events = play(ch, clip * 2, 0.0) + play(ch, knocked, 12.0)
    assert [r for _, r in events] == ["view_moved"]


def test_dusk_is_no_fault_and_night_keeps_its_own_baseline(
        cfg: NodeConfig, clip: list[np.ndarray]) -> None:
    """Light falling to 35 % over 15 min (one frame a second): no fault; the night profile
    learns its own baseline (the day's is kept), and a cover at night is still covered."""
    ch = CameraHealth(cfg)
    events = []
    n = 20 * 60
    for k in range(n):
        gain = 1.0 - 0.65 * min(1.0, k / (15 * 60))
        f = np.clip(clear_view(clip[k % len(clip)]) * gain, 0, 255).astype(np.uint8)
        events += [(k, e.reason) for e in ch.check(f, float(k))]
    assert events == [] and ch.profile == "night"
    day, night = ch.baselines["day"], ch.baselines["night"]
    assert day.luma > 60 and night.luma < 40
    dusk_cover = [np.clip(cv2.GaussianBlur(f, (0, 0), 8) * 0.35, 0, 255).astype(np.uint8)
                  for f in clip]
    events = play(ch, dusk_cover, float(n))
    assert [r for _, r in events] == ["covered"] and events[0][0] - n <= 10.0
