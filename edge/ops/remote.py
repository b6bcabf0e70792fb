"""Remote commands from the server: expiry, replay and argument checks (the schema of
protocol.commands, again on the node), built-in selftest and logs."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.config import NodeConfig
from protocol import Command, CommandResult
from protocol.commands import CommandArgsError, check_args
from protocol.payloads import utc_now

log = logging.getLogger(__name__)

MAX_TTL_S = 24 * 3600          # a command may not live longer than a day
MAX_SEEN = 2000                # ids kept; the earliest-expiring go first
MAX_LOG_LINES = 500
MAX_LOG_BYTES = 32 * 1024
MAX_LINE_CHARS = 400
SERVICE_UNIT = "pondwatch-edge.service"
# Selftest on a running node leaves out what the service itself holds open.
IN_USE_BY_SERVICE = ("camera", "gpio")

Action = Callable[[dict[str, Any]], Any]


class SeenIds:
    """Command ids already handled, with their expiry, kept in a small JSON file."""

    def __init__(self, path: Path) -> None:
        """Load path; a missing or unreadable file starts empty (logged)."""
        self.path = path
        self._ids: dict[str, float] = {}
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            self._ids = {str(k): float(v) for k, v in raw["seen"].items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("seen-commands file %s unreadable, starting empty: %s", path, exc)

    def __contains__(self, cmd_id: object) -> bool:
        """True when cmd_id was handled before."""
        return cmd_id in self._ids

    def __len__(self) -> int:
        """Number of ids kept."""
        return len(self._ids)

    def add(self, cmd_id: str, expires: float, now: float) -> None:
        """Remember cmd_id until expires, forget expired ids, and write the file atomically."""
        self._ids = {k: v for k, v in self._ids.items() if v >= now}
        self._ids[cmd_id] = expires
        if len(self._ids) > MAX_SEEN:
            keep = sorted(self._ids.items(), key=lambda kv: kv[1])[-MAX_SEEN:]
            self._ids = dict(keep)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".seen-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"seen": self._ids}, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class CommandHandler:
    """Checks, runs and answers server commands; the service supplies the hardware actions."""

    def __init__(self, cfg: NodeConfig, config_path: str, *,
                 actions: dict[str, Action],
                 clock: Callable[[], float] = time.time,
                 seen_path: str | None = None) -> None:
        """actions (snapshot, horn_test, enrol, restart, …) may also replace a built-in one."""
        self._cfg = cfg
        self._config_path = config_path
        self._clock = clock
        default_seen = cfg.health.commands_seen or str(Path(cfg.outbox).parent /
                                                       "commands-seen.json")
        self._seen = SeenIds(Path(seen_path or default_seen))
        self._actions: dict[str, Action] = {"selftest": self._selftest, "logs": self._logs}
        self._actions.update(actions)
        self._lock = threading.Lock()

    @property
    def known(self) -> list[str]:
        """Names of the commands this node answers."""
        return sorted(self._actions)

    def handle(self, cmd: Command) -> CommandResult | None:
        """Run cmd and return its result; None when it is expired or a replay (logged).

        Blocks while the action runs: call it from a worker, not from the MQTT callback."""
        with self._lock:
            now = self._clock()
            expires = cmd.expires_at.timestamp()
            if expires < now:
                log.warning("command %s (%r) expired %.0f s ago: ignored", cmd.id, cmd.cmd,
                            now - expires)
                return None
            if cmd.id in self._seen:
                log.warning("command %s (%r) seen before: replay ignored", cmd.id, cmd.cmd)
                return None
            if expires - now > MAX_TTL_S:
                return self._result(cmd, False, {"error": f"expires_at more than {MAX_TTL_S} s "
                                                          "ahead; refused"})
            # Recorded before running: a restart command must not run again after the restart.
            try:
                self._seen.add(cmd.id, expires, now)
            except OSError as exc:
                log.error("cannot record command %s: %s; refused", cmd.id, exc)
                return self._result(cmd, False, {"error": f"cannot record command id: {exc}"})
        action = self._actions.get(cmd.cmd)
        if action is None:
            log.warning("unknown command %r (%s)", cmd.cmd, cmd.id)
            return self._result(cmd, False, {"error": f"unknown command {cmd.cmd!r}",
                                             "known": self.known})
        try:
            args = check_args(cmd.cmd, cmd.args)
        except CommandArgsError as exc:
            log.warning("command %s (%r) refused: %s", cmd.id, cmd.cmd, exc)
            return self._result(cmd, False, {"error": str(exc)})
        log.info("running command %s (%r) args=%.300r", cmd.id, cmd.cmd, args)
        try:
            result = action(args)
        except Exception as exc:
            log.exception("command %s (%r) failed", cmd.id, cmd.cmd)
            return self._result(cmd, False, {"error": f"{type(exc).__name__}: {exc}"})
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], bool):
            return self._result(cmd, result[0], result[1])
        return self._result(cmd, True, result)

    @staticmethod
    def _result(cmd: Command, ok: bool, result: Any) -> CommandResult:
        """A CommandResult whose result is JSON-safe."""
        try:
            json.dumps(result)
        except (TypeError, ValueError):
            result = str(result)
        return CommandResult(id=cmd.id, ok=ok, result=result, ts=utc_now())

    def handle_selftest(self, args: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """The selftest action, for the service's own use (after a model switch)."""
        return self._selftest(args)

    # ---- built-in actions ------------------------------------------------------------

    def _selftest(self, args: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """The diag checks; camera and GPIO only with {"full": true} (the service holds them)."""
        from edge.ops.diag import run_checks
        skip = () if args.get("full") else IN_USE_BY_SERVICE
        checks = run_checks(self._cfg, self._config_path, skip=skip)
        ok = all(c.ok for c in checks)
        return ok, {"checks": [c.as_dict() for c in checks], "skipped": list(skip)}

    def _logs(self, args: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """The last args["lines"] (default 50) log lines from the journal or the log file."""
        try:
            n = max(1, min(int(args.get("lines", 50)), MAX_LOG_LINES))
        except (TypeError, ValueError):
            return False, {"error": "lines must be a number"}
        lines, source = self._journal(n), "journal"
        if not lines and self._cfg.health.log_file:
            lines, source = tail_file(Path(self._cfg.health.log_file), n), "file"
        if not lines:
            return False, {"error": "no journal entries and no readable health.log_file",
                           "lines": []}
        return True, {"source": source, "lines": clip_lines(lines)}

    @staticmethod
    def _journal(n: int) -> list[str]:
        """The unit's last n journal lines; empty when journalctl is absent or has none."""
        exe = shutil.which("journalctl")
        if not exe:
            return []
        try:
            out = subprocess.run([exe, "-u", SERVICE_UNIT, "-n", str(n), "--no-pager", "-q",
                                  "-o", "short-iso"], capture_output=True, text=True,
                                 timeout=10, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("journalctl failed: %s", exc)
            return []
        return [ln for ln in out.stdout.splitlines() if ln and not ln.startswith("-- ")]


def tail_file(path: Path, n: int) -> list[str]:
    """The last n lines of a text file (reads at most the last 1 MB)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 1_000_000))
            data = fh.read()
    except OSError as exc:
        log.warning("cannot read log file %s: %s", path, exc)
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-n:]


def clip_lines(lines: list[str]) -> list[str]:
    """Lines shortened and the oldest dropped so that the answer stays small."""
    out: list[str] = []
    size = 0
    for line in reversed(lines):
        line = line[:MAX_LINE_CHARS]
        size += len(line.encode()) + 4
        if size > MAX_LOG_BYTES:
            break
        out.append(line)
    return out[::-1]
