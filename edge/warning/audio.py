"""Sound output behind a seam: an aplay player for the horn speaker and a silent stand-in."""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Protocol

from edge.errors import EdgeError

log = logging.getLogger(__name__)

BUILTIN_VOICE = Path(__file__).parent / "assets" / "warning_zh.wav"


class AudioError(EdgeError, RuntimeError):
    """A sound file that cannot be played."""


class AudioPlayer(Protocol):
    """Plays one sound at a time without blocking the caller."""

    def play(self, path: str) -> None:
        """Start playing path; a sound still playing is replaced."""

    def stop(self) -> None:
        """Stop the sound that is playing, if any."""

    @property
    def busy(self) -> bool:
        """True while a sound plays."""


class NullPlayer:
    """A player that only records what it was asked to play (no speaker fitted)."""

    def __init__(self) -> None:
        """Start with an empty record."""
        self.played: list[str] = []

    def play(self, path: str) -> None:
        """Record path."""
        self.played.append(path)

    def stop(self) -> None:
        """Nothing plays, nothing to stop."""

    @property
    def busy(self) -> bool:
        """Never busy."""
        return False


class AplayPlayer:
    """Plays WAV files with ALSA's aplay in a child process."""

    def __init__(self, device: str | None = None, command: str = "aplay") -> None:
        """Use the ALSA device (None: the default) and the aplay binary found on PATH."""
        self._device = device
        self._command = command
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def available(self) -> bool:
        """True when the aplay binary exists."""
        return shutil.which(self._command) is not None

    def play(self, path: str) -> None:
        """Start aplay on path, replacing a sound still playing; raise AudioError if impossible."""
        if not Path(path).is_file():
            raise AudioError(f"sound file {path} does not exist")
        argv = [self._command, "-q"]
        if self._device:
            argv += ["-D", self._device]
        argv.append(path)
        with self._lock:
            self._stop_locked()
            try:
                self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            except OSError as exc:
                raise AudioError(f"cannot start {self._command}: {exc}") from exc
        log.debug("playing %s", path)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the current sound to end; its exit code (None when nothing played)."""
        with self._lock:
            proc = self._proc
        if proc is None:
            return None
        _, err = proc.communicate(timeout=timeout)
        if proc.returncode:
            log.warning("aplay exited %s: %s", proc.returncode,
                        err.decode(errors="replace").strip()[-200:])
        return proc.returncode

    def stop(self) -> None:
        """Stop the sound that is playing."""
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        """Terminate and reap the child; the caller holds the lock."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()

    @property
    def busy(self) -> bool:
        """True while aplay runs."""
        with self._lock:
            return self._proc is not None and self._proc.poll() is None
