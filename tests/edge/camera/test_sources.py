"""Frame sources: files on their own clock, folders, the latest-frame slot, live reconnects."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.camera.sources import (
    FAILED,
    OK,
    ImageFolderSource,
    LatestFrameSlot,
    LiveSource,
    SourceError,
    VideoFileSource,
    is_live,
    open_source,
)
from tests.support import wait_for

HANG_S = 15.0  # only guards against a hang: how fast is not asserted in tests


def frame(i: int) -> np.ndarray:
    """A 64x48 frame whose first pixel encodes i."""
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, :, 1] = i * 10
    return img


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 frames at 10 fps."""
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(20):
        w.write(frame(i))
    w.release()
    return path


def drain(src: Any) -> list[tuple[np.ndarray, float]]:
    """Every frame a finite source gives."""
    out = []
    while (item := src.read()) is not None:
        out.append(item)
    return out


def test_video_file_runs_on_its_own_clock(clip: Path) -> None:
    """Without a cap every frame comes, stamped frame index / native fps."""
    src = open_source(str(clip), fps_cap=100)
    assert isinstance(src, VideoFileSource) and src.fps == pytest.approx(10.0)
    items = drain(src)
    assert [round(t, 3) for _, t in items] == [round(i / 10, 3) for i in range(20)]
    assert int(items[7][0][0, 0, 1]) == pytest.approx(70, abs=6)
    src.close()
    src.close()  # twice is fine
    assert src.read() is None


def test_video_file_fps_cap_drops_frames_between_slots(clip: Path) -> None:
    """A 5 fps cap on a 10 fps file keeps every other frame, times unchanged."""
    items = drain(open_source(str(clip), fps_cap=5))
    assert [round(t, 3) for _, t in items] == [round(i / 5, 3) for i in range(10)]


def test_image_folder_in_name_order_skipping_bad_files(tmp_path: Path) -> None:
    """Images in name order at 1/fps_cap spacing; a corrupt image and other files skipped."""
    for i in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), frame(i))
    (tmp_path / "img1b.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("x")
    src = open_source(str(tmp_path), fps_cap=2)
    assert isinstance(src, ImageFolderSource) and src.fps is None
    items = drain(src)
    assert [int(f[0, 0, 1]) for f, _ in items] == [0, 10, 20]
    assert [t for _, t in items] == [0.0, 0.5, 1.5]  # the corrupt file kept its slot


def test_single_image_is_a_one_frame_source(tmp_path: Path) -> None:
    """An image file gives one frame."""
    cv2.imwrite(str(tmp_path / "a.png"), frame(3))
    assert len(drain(open_source(str(tmp_path / "a.png"), fps_cap=5))) == 1


@pytest.mark.parametrize("spec", ["/nonexistent/clip.mp4", "relative/missing"])
def test_missing_paths_raise(spec: str) -> None:
    """A file or folder that does not exist is a SourceError naming it."""
    with pytest.raises(SourceError, match="missing|nonexistent"):
        open_source(spec, fps_cap=5)


def test_empty_folder_and_unreadable_video_raise(tmp_path: Path) -> None:
    """No images in the folder, or a file that is no video: SourceError."""
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path), fps_cap=5)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError, match="cannot open"):
        open_source(str(bad), fps_cap=5)


def test_picamera2_without_the_library_raises() -> None:
    """picamera2 is imported only when asked for; off a Pi that is a clear error."""
    with pytest.raises(SourceError, match="picamera2"):
        open_source("picamera2", fps_cap=5)


def test_is_live() -> None:
    """Cameras and streams are live; files and folders are not."""
    for spec in (0, "1", "/dev/video0", "rtsp://cam/1", "http://cam/mjpg", "picamera2"):
        assert is_live(spec)
    for spec in ("clip.mp4", "/data/frames", "./rtsp.mp4"):
        assert not is_live(spec)


def test_latest_frame_slot_keeps_only_the_newest() -> None:
    """Three puts, one take: the newest; the two older ones are dropped."""
    slot = LatestFrameSlot()
    assert slot.take(timeout=0) is None
    for i in range(3):
        slot.put(frame(i), float(i))
    item = slot.take(timeout=0)
    assert item is not None and item[1] == 2.0
    assert slot.dropped == 2
    assert slot.take(timeout=0) is None  # taken once
    assert slot.peek() is not None


def test_latest_frame_slot_wakes_a_waiting_reader() -> None:
    """A reader blocked in take() gets the frame a writer thread puts."""
    slot = LatestFrameSlot()
    threading.Timer(0.05, slot.put, args=(frame(1), 1.0)).start()
    item = slot.take(timeout=5)
    assert item is not None and item[1] == 1.0


class FakeCapture:
    """A capture that gives n frames then fails, or blocks forever when stall is set."""

    def __init__(self, n: int = 10**9, stall: threading.Event | None = None) -> None:
        """Frames to give before failing; an event to block on instead of reading."""
        self.n, self.stall, self.released, self.i = n, stall, False, 0

    def read(self) -> tuple[bool, Any]:
        """One frame, a failure, or a stall."""
        if self.stall is not None:
            self.stall.wait()
            return False, None
        if self.i >= self.n:
            return False, None
        self.i += 1
        time.sleep(0.005)  # a camera delivers at its own pace
        return True, frame(self.i % 20)

    def release(self) -> None:
        """Remember release."""
        self.released = True


def test_live_source_that_cannot_open_backs_off_and_fails_without_hanging() -> None:
    """An opener that always raises: read() returns None in time, state ends "failed"."""
    calls: list[float] = []

    def opener() -> FakeCapture:
        calls.append(time.monotonic())
        raise OSError("no such device")
    src = LiveSource("fake", opener, fps_cap=5, backoff_s=0.01, max_backoff_s=0.04,
                     fail_after=3)
    start = time.monotonic()
    assert src.read(timeout=0.2) is None
    assert time.monotonic() - start < HANG_S
    wait_for(lambda: src.state == FAILED, HANG_S, "the source to give up")
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert gaps[0] >= 0.009 and len(calls) >= 3  # it waits backoff_s before retrying
    src.close()
    src.close()


def test_live_source_reconnects_after_read_failures() -> None:
    """A capture that dies after a few frames is reopened and frames keep coming."""
    opened: list[FakeCapture] = []

    def opener() -> FakeCapture:
        opened.append(FakeCapture(n=3))
        return opened[-1]
    src = LiveSource("fake", opener, fps_cap=0, backoff_s=0.01)
    got = [src.read(timeout=2) for _ in range(8)]
    assert all(g is not None for g in got)
    assert len(opened) >= 2 and all(c.released for c in opened[:-1])
    assert src.reconnects >= 1
    src.close()


def test_live_source_replaces_a_stalled_capture() -> None:
    """A capture that blocks forever is abandoned after stall_s and a new one opened."""
    unblock = threading.Event()
    opened: list[FakeCapture] = []

    def opener() -> FakeCapture:
        cap = FakeCapture(n=2) if not opened else FakeCapture(stall=unblock) \
            if len(opened) == 1 else FakeCapture()
        opened.append(cap)
        return cap
    src = LiveSource("fake", opener, fps_cap=0, stall_s=0.2, backoff_s=0.01)
    try:
        wait_for(lambda: len(opened) >= 2, HANG_S, "the second capture")
        start = time.monotonic()
        src.read(timeout=0.1)
        assert time.monotonic() - start < HANG_S  # a stalled capture never blocks read()
        wait_for(lambda: src.read(timeout=0.1) is not None and len(opened) >= 3, HANG_S,
                 "frames from a third capture")
        assert src.state == OK
    finally:
        unblock.set()
        src.close()


def test_live_fps_cap_spaces_frames() -> None:
    """A 20 fps cap on a ~200 fps camera: frames at least ~50 ms apart."""
    src = LiveSource("fake", FakeCapture, fps_cap=20, backoff_s=0.01)
    times = [item[1] for item in (src.read(timeout=2) for _ in range(5)) if item is not None]
    src.close()
    assert len(times) == 5
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.045


def test_missing_video_device_is_live_and_reported() -> None:
    """/dev/video99 opens as a live source that reports it is not ok and never blocks."""
    src = open_source("/dev/video99", fps_cap=5)
    try:
        assert isinstance(src, LiveSource)
        assert src.read(timeout=0.3) is None
        assert src.state != OK
    finally:
        src.close()
