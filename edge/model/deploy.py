"""The node side of model deployment: download from the server, check, switch, or roll back.

Nothing the server sends is loaded on its word: the file must be pinned by PondWatch's own
manifest or carry a signature by a key of model.trusted_keys (edge.trust), checked before the
file is unpickled.
"""

from __future__ import annotations

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
from edge.trust import ModelTrustError, check_model, keys_of
from edge.vision.types import Detector
from protocol import signing
from protocol.digest import sha256_file

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,128}$")
MAX_MODEL_BYTES = 1 << 30  # a YOLO .pt is tens of MB; the server's upload limit is lower
Result = tuple[bool, dict[str, Any]]


class ModelDeployer:
    """Runs model_update: fetch with the command's download token (bounded by the announced
    size, no redirects), check digest and signature before loading, switch atomically, then
    selftest; a model that fails to load, or a selftest check that passed before the switch
    and fails after it, puts the old model back."""

    def __init__(self, cfg: NodeConfig, *, load: Callable[[str], Detector],
                 swap: Callable[[Detector], Detector], selftest: Callable[[], Result],
                 on_switched: Callable[[ModelIdentity], None]) -> None:
        """load builds a detector for a path; swap installs one and returns the old one."""
        self.cfg = cfg
        self._load = load
        self._swap = swap
        self._selftest = selftest
        self._on_switched = on_switched
        self._lock = threading.Lock()

    def handle(self, args: dict[str, Any]) -> Result:
        """The model_update command: args name, sha256, size, url, token, signature (and
        labels)."""
        name, sha, url = args.get("name"), args.get("sha256"), args.get("url")
        size, token, sig = args.get("size"), args.get("token"), args.get("signature")
        if not isinstance(name, str) or not NAME_RE.match(name):
            return False, {"error": f"bad model name {name!r}"}
        if not isinstance(sha, str) or not SHA_RE.match(sha):
            return False, {"error": "sha256 must be 64 lower-case hex digits"}
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_MODEL_BYTES:
            return False, {"error": f"size must be a byte count up to {MAX_MODEL_BYTES}"}
        if not isinstance(token, str) or not TOKEN_RE.match(token):
            return False, {"error": "the command carries no valid download token"}
        doc = None
        if sig is not None:
            try:
                doc = signing.parse_doc(sig)
            except signing.SignatureError as exc:
                return False, {"error": f"signature: {exc}"}
        base = self.cfg.deploy.server_url
        if not base:
            return False, {"error": "deploy.server_url is not configured on this node; refused"}
        if not isinstance(url, str) or not url.startswith(base.rstrip("/") + "/"):
            return False, {"error": f"url {url!r} is not under deploy.server_url {base}; refused"}
        with self._lock:
            return self._update(name, sha, url, size, token, doc)

    def _update(self, name: str, sha: str, url: str, size: int, token: str,
                doc: signing.SignatureDoc | None) -> Result:
        """Download, verify digest and signature, load, switch, selftest; roll back on
        failure."""
        active = Path(self.cfg.model.path)
        if model_format(active) != "pytorch" or active.is_dir():
            return False, {"error": f"model.path {active} is a {model_format(active)} "
                           "export; model_update replaces a .pt model.path (export again on the "
                           "node after the switch)"}
        old = modelstore.describe(active)
        if old.sha256 == sha:
            return True, {"model": name, "sha256": sha, "unchanged": True,
                          **self._renew(active, sha, doc)}
        folder = active.parent
        part = folder / f".{name}-{sha[:12]}.part"
        fresh = folder / f"{name}-{sha[:12]}.pt"
        try:
            self._download(url, part, size, token)
            got = sha256_file(part)
            if got != sha:
                raise ModelStoreError(f"sha256 of the download is {got}, the server announced "
                                      f"{sha}; refused")
            os.replace(part, fresh)
            if doc is not None:
                signing.sig_path(fresh).write_text(doc.model_dump_json())
            verdict = check_model(fresh, self.cfg.model)  # before anything unpickles it
        except (ModelStoreError, ModelTrustError, OSError) as exc:
            fresh.unlink(missing_ok=True)
            signing.sig_path(fresh).unlink(missing_ok=True)
            log.error("model_update %s refused: %s", name, exc)
            return False, {"error": str(exc), "kept": _ident(old)}
        finally:
            part.unlink(missing_ok=True)
        log.info("model_update %s: %s by %s", name, verdict.how, verdict.key_id or verdict.name)
        before = _passed(self._selftest()[1])
        undo = _switch(active, fresh)
        try:
            detector = self._load(str(active))
        except Exception as exc:  # any load failure keeps the old model
            undo()
            _remove(fresh)
            log.error("model_update %s: the new model does not load: %s; rolled back", name, exc)
            return False, {"error": f"the new model does not load: {exc}; rolled back",
                           "kept": _ident(old)}
        previous = self._swap(detector)
        _ok, report = self._selftest()
        failed = sorted(before - _passed(report))  # checks the switch broke
        if failed:
            undo()
            self._swap(previous)
            _remove(fresh)
            log.error("model_update %s: selftest failed after the switch (%s); rolled back",
                      name, failed)
            why = ", ".join(map(str, failed))
            return False, {"error": f"selftest failed after the switch ({why}); rolled back",
                           "kept": _ident(old), "selftest": report}
        now = modelstore.describe(active)
        self._on_switched(now)
        log.info("model switched to %s (%s), was %s", name, sha[:12], old.sha256[:12])
        return True, {"model": name, "sha256": now.sha256, "previous": _ident(old)}

    def _renew(self, active: Path, sha: str, doc: signing.SignatureDoc | None
               ) -> dict[str, str]:
        """A new signature for the model already running (the county's key rotated): put
        beside it when a trusted key signed this very file; nothing is downloaded."""
        if doc is None:
            return {}
        try:
            vouched = signing.verify(doc, keys_of(self.cfg.model))
        except (signing.SignatureError, ModelTrustError) as exc:
            return {"signature": f"kept the old one: {exc}"}
        if vouched.sha256 != sha:
            return {"signature": "kept the old one: it signs another file"}
        out = signing.sig_path(active.resolve())
        tmp = out.with_name(out.name + ".new")
        tmp.write_text(doc.model_dump_json())
        os.replace(tmp, out)
        log.info("signature of %s renewed (key %s)", active, vouched.key_id)
        return {"signature": f"renewed (key {vouched.key_id})"}

    def _download(self, url: str, out: Path, size: int, token: str) -> None:
        """GET url with the command's single-use download token (a bearer token), at most
        size bytes, no redirect."""
        context = None
        if url.startswith("https://"):
            context = ssl.create_default_context(cafile=self.cfg.deploy.ca_file)
        modelstore.download(url, out, self.cfg.deploy.timeout_s, context=context, size=size,
                            headers={"Authorization": f"Bearer {token}"})


def _remove(model: Path) -> None:
    """Delete a refused model file and its signature."""
    model.unlink(missing_ok=True)
    signing.sig_path(model).unlink(missing_ok=True)


def _passed(report: dict[str, Any]) -> set[str]:
    """Names of the selftest checks that passed."""
    return {str(c.get("name")) for c in report.get("checks", []) if c.get("ok")}


def _ident(i: ModelIdentity) -> dict[str, Any]:
    """A model identity as JSON."""
    return {"name": i.name, "format": i.format, "sha256": i.sha256}


def _switch(active: Path, fresh: Path) -> Callable[[], None]:
    """Make active serve fresh in one rename; the function that puts the old one back.

    A symlink (models/person.pt) is re-pointed (its signature stays beside its target); a
    plain file is kept as NAME.previous (a hard link, or a copy) and replaced, and so is its
    signature NAME.sig.
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
    sig, old_sig = signing.sig_path(active), signing.sig_path(previous)
    old_sig.unlink(missing_ok=True)
    had_sig = sig.is_file()
    if had_sig:
        os.replace(sig, old_sig)
    if signing.sig_path(fresh).is_file():
        os.replace(signing.sig_path(fresh), sig)
    os.replace(fresh, active)

    def undo_file() -> None:
        sig.unlink(missing_ok=True)
        if had_sig:
            os.replace(old_sig, sig)
        os.replace(previous, active)
    return undo_file
