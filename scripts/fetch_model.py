#!/usr/bin/env python3
"""Fetch the detector weights named in models/manifest.yaml and point models/person.pt at them.

A thin wrapper over edge.model.store (the same code as `pondwatch-edge model fetch`), kept for
setup.sh and install-node.sh, which run before the package is installed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.manifest import ModelStoreError, load_manifest, manifest_path, models_dir  # noqa: E402
from edge.model.store import CONNECT_TIMEOUT_S, fetch, link_person  # noqa: E402
from edge.trust import pinned  # noqa: E402
from protocol.digest import sha256_file  # noqa: E402

log = logging.getLogger("fetch_model")


def main(argv: list[str] | None = None) -> int:
    """Command line: fetch one model (or auto) and link person.pt; exit 0 on success."""
    p = argparse.ArgumentParser(description="Fetch PondWatch detector weights.")
    p.add_argument("--model", default="default",
                   help="default (the manifest's), auto (yolo11n when it can be downloaded, "
                   "else person-offline), or a name from models/manifest.yaml")
    p.add_argument("--dest", default=str(models_dir()),
                   help="folder for the weights (default: $PONDWATCH_MODELS, else models/)")
    p.add_argument("--manifest", help="manifest file (default: the folder's manifest.yaml, "
                   "else the one shipped with PondWatch)")
    p.add_argument("--timeout", type=float, default=CONNECT_TIMEOUT_S, help="connect timeout")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    dest = Path(args.dest)
    try:
        manifest = load_manifest(args.manifest or manifest_path(dest))
        name = manifest.default if args.model == "default" else args.model
        if name == "auto":
            try:
                path = fetch("yolo11n", dest, manifest, args.timeout)
            except (OSError, ModelStoreError) as exc:
                log.warning("yolo11n unavailable (%s); using person-offline", exc)
                path = fetch("person-offline", dest, manifest, args.timeout)
        else:
            path = fetch(name, dest, manifest, args.timeout)
    except (OSError, ModelStoreError) as exc:
        print(f"模型获取失败 / model fetch failed: {exc}", file=sys.stderr)
        return 1
    person = link_person(path, dest)
    print(f"{person} -> {path.name}")
    if sha256_file(path) not in pinned():  # yolo11n: its digest is not recorded yet
        log.warning("%s is not pinned by PondWatch's manifest: a node loads it only once the "
                    "county has checked it and signed it (pondwatch-edge model sign NAME --key "
                    "KEY; the key's .pub in model.trusted_keys)", path.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
