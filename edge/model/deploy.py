"""The node side of model deployment: download from the server, check, switch, or roll back."""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.config import NodeConfig
from edge.manifest import ModelStoreError, model_format
from edge.model import store as modelstore
from edge.model.store import ModelIdentity
from edge.vision.types import Detector
from protocol.digest import sha256_file

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
Result = tuple[bool, dict[str, Any]]


class ModelDeployer:
    """Runs model_update: fetch with the node's credentials, verify, switch atomically, then
    selftest; a model that fails to load, or a selftest check that passed before the switch
    and fails after it, puts the old model back."""

    def __init__(self, cfg: NodeConfig, *, load: Callable[[str], Detector],
                 swap: Callable[[Detector], Detector], selftest: Callable[[], Result],
                 on_switched: Callable[[ModelIdentity], None],
                 password: Callable[[], str | None]) -> None:
        """load builds a detector for a path; swap installs one and returns the old one."""
        self.cfg = cfg
        self._load = load
        self._swap = swap
        self._selftest = selftest
        self._on_switched = on_switched
        self._password = password
        self._lock = threading.Lock()

    def handle(self, args: dict[str, Any]) -> Result:
        """The model_update command: args name, sha256, url (and size, labels)."""
        name, sha, url = args.get("name"), args.get("sha256"), args.get("url")
        if not isinstance(name, str) or not NAME_RE.match(name):
            return False, {"error": f"bad model name {name!r}"}
        if not isinstance(sha, str) or not SHA_RE.match(sha):
            return False, {"error": "sha256 must be 64 lower-case hex digits"}
        base = self.cfg.deploy.server_url
        if not base:
            return False, {"error": "deploy.server_url is not configured on this node; refused"}
        if not isinstance(url, str) or not url.startswith(base.rstrip("/") + "/"):
            return False, {"error": f"url {url!r} is not under deploy.server_url {base}; refused"}
        with self._lock:
            return self._update(name, sha, url)

    def _update(self, name: str, sha: str, url: str) -> Result:
        """Download, verify, load, switch, selftest; roll back on failure."""
        active = Path(self.cfg.model.path)
        if model_format(active) != "pytorch" or active.is_dir():
            return False, {"error": f"model.path {active} is a {model_format(active)} "
                           "export; model_update replaces a .pt model.path (export again on the "
                           "node after the switch)"}
        old = modelstore.describe(active)
        if old.sha256 == sha:
            return True, {"model": name, "sha256": sha, "unchanged": True}
        folder = active.parent
        part = folder / f".{name}-{sha[:12]}.part"
        try:
            self._download(url, part)
            got = sha256_file(part)
            if got != sha:
                raise ModelStoreError(f"sha256 of the download is {got}, the server announced "
                                      f"{sha}; refused")
            fresh = folder / f"{name}-{sha[:12]}.pt"
            os.replace(part, fresh)
        except (ModelStoreError, OSError) as exc:
            log.error("model_update %s refused: %s", name, exc)
            return False, {"error": str(exc), "kept": _ident(old)}
        finally:
            part.unlink(missing_ok=True)
        before = _passed(self._selftest()[1])
        undo = _switch(active, fresh)
        try:
            detector = self._load(str(active))
        except Exception as exc:  # any load failure keeps the old model
            undo()
            fresh.unlink(missing_ok=True)
            log.error("model_update %s: the new model does not load: %s; rolled back", name, exc)
            return False, {"error": f"the new model does not load: {exc}; rolled back",
                           "kept": _ident(old)}
        previous = self._swap(detector)
        _ok, report = self._selftest()
        failed = sorted(before - _passed(report))  # checks the switch broke
        if failed:
            undo()
            self._swap(previous)
            fresh.unlink(missing_ok=True)
            log.error("model_update %s: selftest failed after the switch (%s); rolled back",
                      name, failed)
            why = ", ".join(map(str, failed))
            return False, {"error": f"selftest failed after the switch ({why}); rolled back",
                           "kept": _ident(old), "selftest": report}
        now = modelstore.describe(active)
        self._on_switched(now)
        log.info("model switched to %s (%s), was %s", name, sha[:12], old.sha256[:12])
        return True, {"model": name, "sha256": now.sha256, "previous": _ident(old)}

    def _download(self, url: str, out: Path) -> None:
        """GET url with the node's MQTT user and password (HTTP Basic)."""
        user = self.cfg.mqtt.username or self.cfg.node_id
        password = self._password() or ""
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        context = None
        if url.startswith("https://"):
            context = ssl.create_default_context(cafile=self.cfg.deploy.ca_file)
        modelstore.download(url, out, self.cfg.deploy.timeout_s,
                            headers={"Authorization": f"Basic {token}"}, context=context)


def _passed(report: dict[str, Any]) -> set[str]:
    """Names of the selftest checks that passed."""
    return {str(c.get("name")) for c in report.get("checks", []) if c.get("ok")}


def _ident(i: ModelIdentity) -> dict[str, Any]:
    """A model identity as JSON."""
    return {"name": i.name, "format": i.format, "sha256": i.sha256}


def _switch(active: Path, fresh: Path) -> Callable[[], None]:
    """Make active serve fresh in one rename; the function that puts the old one back.

    A symlink (models/person.pt) is re-pointed; a plain file is kept as NAME.previous (a hard
    link, or a copy) and replaced.
    """
    tmp = active.with_name(f".{active.name}.new")
    tmp.unlink(missing_ok=True)
    if active.is_symlink():
        target = os.readlink(active)
        tmp.symlink_to(fresh.name if fresh.parent == active.parent else fresh)
        os.replace(tmp, active)

        def undo_link() -> None:
            back = active.with_name(f".{active.name}.back")
            back.unlink(missing_ok=True)
            back.symlink_to(target)
            os.replace(back, active)
        return undo_link
    previous = active.with_name(active.name + ".previous")
    previous.unlink(missing_ok=True)
    try:
        os.link(active, previous)
    except OSError:
        shutil.copy2(active, previous)
    os.replace(fresh, active)

    def undo_file() -> None:
        os.replace(previous, active)
    return undo_file
