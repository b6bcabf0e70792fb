"""Camera sources behind one seam: picamera2, OpenCV devices and streams, files, folders."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge.errors import EdgeError

log = logging.getLogger(__name__)

Frame = tuple[np.ndarray, float]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
OK, RECONNECTING, FAILED = "ok", "reconnecting", "failed"


class SourceError(EdgeError, RuntimeError):
    """A source spec that names nothing that can be opened."""


class FrameSource(Protocol):
    """Gives BGR frames with their capture time; closes cleanly."""

    state: str

    def read(self) -> Frame | None:
        """The next frame and its time, or None (end of a file; no frame yet from a camera)."""

    @property
    def fps(self) -> float | None:
        """Native frame rate, when known."""

    def close(self) -> None:
        """Release the device; safe to call twice."""


class LatestFrameSlot:
    """Holds only the newest frame: the writer overwrites, the reader takes the newest once."""

    def __init__(self) -> None:
        """An empty slot."""
        self._cond = threading.Condition()
        self._item: Frame | None = None
        self._seq = 0
        self._taken = 0
        self.dropped = 0

    def put(self, frame: np.ndarray, t: float) -> None:
        """Store a frame, dropping the previous one if nobody took it."""
        with self._cond:
            if self._item is not None and self._seq != self._taken:
                self.dropped += 1
            self._item = (frame, t)
            self._seq += 1
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not yet taken, waiting up to timeout seconds; None if none came."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._seq != self._taken, timeout):
                return None
            self._taken = self._seq
            return self._item

    def peek(self) -> Frame | None:
        """The newest frame, taken or not (for previews)."""
        with self._cond:
            return self._item


class _Pacer:
    """Lets through frames at most fps_cap per second of the given clock."""

    def __init__(self, fps_cap: float) -> None:
        """A pacer; fps_cap <= 0 lets every frame through."""
        self.period = 1.0 / fps_cap if fps_cap > 0 else 0.0
        self._next: float | None = None

    def admit(self, t: float) -> bool:
        """True when a frame at time t is due; frames between slots are dropped."""
        if self._next is not None and t < self._next - 1e-6:
            return False
        base = t if self._next is None or t - self._next > self.period else self._next
        self._next = base + self.period
        return True


class VideoFileSource:
    """A video file on its own clock (frame index / native fps), capped to fps_cap."""

    def __init__(self, path: str, fps_cap: float) -> None:
        """Open the file; raise SourceError when OpenCV cannot read it."""
        import cv2
        self.path = path
        self._cap: Any = cv2.VideoCapture(path)
        if not self._cap.isOpened():
            raise SourceError(f"cannot open video file {path}")
        native = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._fps = native if 0 < native < 1000 else None
        self._period = 1.0 / (self._fps or 25.0)
        self._index = -1
        self._pacer = _Pacer(fps_cap)
        self.state = OK

    @property
    def fps(self) -> float | None:
        """The file's native frame rate."""
        return self._fps

    def read(self) -> Frame | None:
        """The next due frame and its video time; None at the end of the file."""
        if self._cap is None:
            return None
        while True:
            if not self._cap.grab():
                return None
            self._index += 1
            t = self._index * self._period
            if not self._pacer.admit(t):
                continue
            ok, frame = self._cap.retrieve()
            if not ok or frame is None:
                return None
            return frame, t

    def close(self) -> None:
        """Release the file."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFolderSource:
    """The images of a folder in name order (or one image), one every 1/fps_cap seconds."""

    def __init__(self, path: str, fps_cap: float) -> None:
        """List the images; raise SourceError when there are none."""
        p = Path(path)
        self.files = [p] if p.is_file() else sorted(
            f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"no images in folder {path}")
        self._period = 1.0 / fps_cap if fps_cap > 0 else 1.0
        self._i = 0
        self.state = OK

    @property
    def fps(self) -> float | None:
        """Folders have no native rate."""
        return None

    def read(self) -> Frame | None:
        """The next readable image; unreadable files are skipped with a warning."""
        import cv2
        while self._i < len(self.files):
            i = self._i
            self._i += 1
            frame = cv2.imread(str(self.files[i]), cv2.IMREAD_COLOR)
            if frame is None:
                log.warning("skipping unreadable image %s", self.files[i])
                continue
            return frame, i * self._period
        return None

    def close(self) -> None:
        """Nothing to release."""
        self._i = len(self.files)


class LiveSource:
    """A live camera read by a worker thread that reconnects with backoff; read() never hangs.

    open_capture() returns an object with read() -> (ok, frame) and release(); a capture
    that stalls is abandoned (its thread is a daemon) and a new one is opened.
    """

    def __init__(self, name: str, open_capture: Callable[[], Any], fps_cap: float,
                 stall_s: float = 10.0, backoff_s: float = 1.0, max_backoff_s: float = 30.0,
                 fail_after: int = 5, clock: Callable[[], float] = time.monotonic) -> None:
        """Start the worker; state is "reconnecting" until the first frame arrives."""
        self.name = name
        self._open = open_capture
        self._slot = LatestFrameSlot()
        self._pacer = _Pacer(fps_cap)
        self.stall_s, self.backoff_s, self.max_backoff_s = stall_s, backoff_s, max_backoff_s
        self.fail_after = fail_after
        self._clock = clock
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._gen = 0
        self._last_frame_t = clock()
        self._busy_since: float | None = None  # opening or reading since (None: backing off)
        self.failures = 0
        self.reconnects = 0
        self.state = RECONNECTING
        self._fps: float | None = None
        self._start_worker()

    @property
    def fps(self) -> float | None:
        """The device's reported rate, once known."""
        return self._fps

    def _start_worker(self) -> None:
        """Start a worker of a new generation; older workers exit when they notice."""
        with self._lock:
            self._gen += 1
            gen = self._gen
        self._last_frame_t = self._clock()
        self._busy_since = self._clock()
        threading.Thread(target=self._work, args=(gen,), name=f"capture-{self.name}",
                         daemon=True).start()

    def _current(self, gen: int) -> bool:
        """True while this worker generation should keep going."""
        return gen == self._gen and not self._stop.is_set()

    def _set_state(self, state: str) -> None:
        """Change and log the state."""
        if state != self.state:
            log.warning("camera %s: %s → %s", self.name, self.state, state)
            self.state = state

    def _work(self, gen: int) -> None:
        """Open, read until failure, back off, repeat."""
        delay = self.backoff_s
        while self._current(gen):
            cap = None
            self._busy_since = self._clock()
            try:
                cap = self._open()
                while self._current(gen):
                    ok, frame = cap.read()
                    if not ok or frame is None:
                        raise OSError("read failed")
                    if not self._current(gen):
                        break
                    self._last_frame_t = self._busy_since = self._clock()
                    self.failures, delay = 0, self.backoff_s
                    self._set_state(OK)
                    self._slot.put(frame, self._last_frame_t)
            except Exception as exc:  # any backend error means: reconnect
                if not self._current(gen):
                    break
                self.failures += 1
                self.reconnects += 1
                self._set_state(FAILED if self.failures >= self.fail_after else RECONNECTING)
                log.info("camera %s: %s; retry in %.1f s", self.name, exc, delay)
            finally:
                if cap is not None:
                    try:
                        cap.release()
                    except Exception:  # releasing a broken device may fail too
                        log.debug("camera %s: release failed", self.name)
            if self._current(gen):
                self._busy_since = None
            self._stop.wait(delay)
            delay = min(delay * 2.0, self.max_backoff_s)

    def read(self, timeout: float = 1.0) -> Frame | None:
        """The newest due frame, or None after timeout; a stalled capture is replaced."""
        deadline = self._clock() + timeout
        while not self._stop.is_set():
            left = deadline - self._clock()
            if left <= 0:
                break
            item = self._slot.take(min(left, 0.1))
            if item is not None and self._pacer.admit(item[1]):
                return item
            busy = self._busy_since
            if busy is not None and self._clock() - busy > self.stall_s:
                log.warning("camera %s: stalled for %.1f s, reopening", self.name, self.stall_s)
                self.failures += 1
                self._set_state(FAILED if self.failures >= self.fail_after else RECONNECTING)
                self._start_worker()
        return None

    def close(self) -> None:
        """Stop the worker; safe twice."""
        self._stop.set()


class _OpenCVCapture:
    """cv2.VideoCapture opened for a device index, /dev/videoN or a stream URL."""

    def __init__(self, spec: str | int, width: int | None, height: int | None) -> None:
        """Open the capture or raise OSError."""
        import cv2
        self.cap = cv2.VideoCapture(spec)
        if not self.cap.isOpened():
            raise OSError(f"cannot open {spec}")
        if width:
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)

    def read(self) -> tuple[bool, Any]:
        """One frame."""
        ok, frame = self.cap.read()
        return bool(ok), frame

    def release(self) -> None:
        """Release the device."""
        self.cap.release()


class _PiCamera2Capture:
    """A Pi camera through picamera2 (imported only here), giving BGR frames."""

    def __init__(self, width: int | None, height: int | None) -> None:
        """Configure and start the camera."""
        from picamera2 import Picamera2
        self.cam = Picamera2()
        size = (width or 1280, height or 720)
        self.cam.configure(self.cam.create_video_configuration(
            main={"size": size, "format": "RGB888"}))  # RGB888 is BGR in memory
        self.cam.start()

    def read(self) -> tuple[bool, Any]:
        """One frame."""
        return True, self.cam.capture_array("main")

    def release(self) -> None:
        """Stop and close the camera."""
        self.cam.stop()
        self.cam.close()


def is_live(spec: str | int) -> bool:
    """True for cameras and streams, False for files and folders."""
    s = str(spec)
    return (s.isdigit() or s == "picamera2" or s.startswith("/dev/video")
            or s.split("://", 1)[0].lower() in {"rtsp", "rtsps", "http", "https", "udp", "tcp"})


def open_source(spec: str | int, fps_cap: float, *, width: int | None = None,
                height: int | None = None, stall_s: float = 10.0) -> FrameSource:
    """Open whatever spec names; raise SourceError for files that do not exist or open."""
    s = str(spec)
    if s == "picamera2":
        try:
            import picamera2  # noqa: F401  (only present on a Pi)
        except ImportError as exc:
            raise SourceError("camera.source is picamera2 but picamera2 is not installed "
                              "(apt install python3-picamera2 on Raspberry Pi OS)") from exc
        return LiveSource("picamera2", lambda: _PiCamera2Capture(width, height), fps_cap,
                          stall_s=stall_s)
    if is_live(s):
        dev: str | int = int(s) if s.isdigit() else s
        return LiveSource(s, lambda: _OpenCVCapture(dev, width, height), fps_cap, stall_s=stall_s)
    path = Path(s)
    if path.is_dir():
        return ImageFolderSource(s, fps_cap)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return ImageFolderSource(s, fps_cap)
        return VideoFileSource(s, fps_cap)
    raise SourceError(f"camera source {s!r} is neither a camera, a stream, a file nor a folder")

