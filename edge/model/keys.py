"""pondwatch-edge model keygen|sign and the trust column of verify: the county's model key.

The private key stays on the admin's offline workstation; nodes and the server list its public
half (model.trusted_keys, models.trusted_keys). A signature covers the file's sha256 and its
whole manifest entry, so `model eval --record` after signing needs a new `model sign`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge.config import load_config
from edge.manifest import Manifest, ModelEntry, ModelStoreError
from edge.model import store as modelstore
from edge.trust import ModelTrustError, TrustVerdict, check_model
from protocol import signing
from protocol.digest import sha256_file


@dataclass(frozen=True)
class Keys:
    """Trusted keys given on the command line (TrustSettings for edge.trust)."""

    trusted_keys: Sequence[str] = field(default_factory=list)


def add_args(ms: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `keygen` and `sign` subcommands."""
    k = ms.add_parser("keygen", help="make the county's model signing key (keep it offline)")
    k.add_argument("out", help="private key file to create (mode 0600); OUT.pub is its public "
                   "half for model.trusted_keys and the server's models.trusted_keys")
    s = ms.add_parser("sign", help="sign a model file and its manifest entry (NAME.pt.sig)")
    s.add_argument("name", help="model name from the manifest")
    s.add_argument("--key", required=True, help="private key from `model keygen`")


def trust_settings(args: argparse.Namespace) -> Keys:
    """The keys `model verify/export/train` trust: --trusted-key, else the --node-config's
    model.trusted_keys."""
    keys = list(args.trusted_key or [])
    if args.node_config:
        keys += load_config(args.node_config).model.trusted_keys
    return Keys(keys)


def run_keygen(args: argparse.Namespace) -> int:
    """Write a new key pair; print the public line."""
    try:
        pub = signing.generate(args.out)
    except signing.SignatureError as exc:
        raise ModelStoreError(str(exc)) from exc
    print(f"{args.out}: private key (mode 0600; keep it offline, back it up)", file=sys.stderr)
    print(f"{args.out}.pub: list it in each node's model.trusted_keys and the server's "
          "models.trusted_keys", file=sys.stderr)
    print(signing.public_text(pub))
    return 0


def sign_file(weights: Path, name: str, entry: ModelEntry, key: str | Path) -> Path:
    """Sign weights with its manifest entry (sha256 filled in); the NAME.pt.sig written."""
    digest = sha256_file(weights)
    if entry.sha256 and entry.sha256 != digest:
        raise ModelStoreError(f"{weights}: sha256 {digest} differs from the manifest entry's "
                              f"{entry.sha256}; refused")
    stale = sorted(k for k, v in (entry.eval or {}).items()
                   if v.get("sha256") not in (None, digest))
    if stale:
        raise ModelStoreError(f"{name}: eval figures {stale} were measured on another file; "
                              "measure this one (model eval --record) before signing")
    try:
        doc = signing.sign(signing.load_private(key), name, digest, weights.stat().st_size,
                           entry.model_dump(mode="json", exclude_none=True) | {"sha256": digest})
    except signing.SignatureError as exc:
        raise ModelStoreError(str(exc)) from exc
    out = signing.sig_path(weights)
    tmp = out.with_name(out.name + ".new")
    tmp.write_text(doc.model_dump_json())
    os.replace(tmp, out)
    return out


def run_sign(args: argparse.Namespace, manifest: Manifest) -> int:
    """`model sign NAME --key KEY`."""
    model = modelstore.resolve(args.name, args.dir, manifest)
    out = sign_file(model.path, args.name, manifest.models[args.name], args.key)
    print(f"{out}: signed {args.name} ({sha256_file(model.path)[:12]}…) with key "
          f"{signing.read_doc(out).key_id}")
    return 0


def trust_line(path: Path, entry: ModelEntry, keys: Keys) -> tuple[bool, str]:
    """Whether a node with keys would load path, in words; a signed entry that differs from
    the manifest's is reported (re-sign after eval --record)."""
    try:
        verdict: TrustVerdict = check_model(path, keys)
    except ModelTrustError as exc:
        return False, f"NOT TRUSTED: {exc}"
    if verdict.how == "pinned":
        return True, "pinned by PondWatch's own manifest"
    signed_entry = dict(verdict.entry or {})
    mine = entry.model_dump(mode="json", exclude_none=True) | {"sha256": verdict.sha256}
    note = "" if signed_entry == mine else (
        " (the manifest entry differs from the signed one: run `model sign` again)")
    return True, f"signed by key {verdict.key_id}{note}"
