"""The pondwatch-server command line: run, import, adduser, check."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from server.core.config import ConfigError, load_config, parse_config
from server.core.errors import ServerError


def _parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    p = argparse.ArgumentParser(prog="pondwatch-server", description="PondWatch server.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="ingest, alerts, paging and the web UI")
    run.add_argument("config")
    run.add_argument("--check-config", action="store_true", help="validate the config and exit")
    imp = sub.add_parser("import", help="import a registry YAML/CSV file (all or nothing)")
    imp.add_argument("file")
    imp.add_argument("--config", help="server.yaml naming the database")
    imp.add_argument("--database", help="database URL (instead of --config)")
    add = sub.add_parser("adduser", help="create or update a web user")
    add.add_argument("config")
    add.add_argument("username")
    add.add_argument("--role", default="admin",
                     help="admin, constable, area_officer, duty_desk, technician, viewer")
    add.add_argument("--person", help="the registry person this user is")
    ds = sub.add_parser("dataset", help="training data from the constables' verdicts")
    dss = ds.add_subparsers(dest="dataset_command", required=True)
    exp = dss.add_parser("export", help="an Ultralytics dataset from resolved alerts (admins)")
    exp.add_argument("out", help="new folder to write")
    exp.add_argument("--since", required=True, help="alerts resolved from this date (ISO 8601)")
    exp.add_argument("--config", help="server.yaml naming the database")
    exp.add_argument("--database", help="database URL (instead of --config)")
    exp.add_argument("--user", required=True,
                     help="the admin exporting (password from PONDWATCH_PASSWORD or a prompt): "
                     "the images may show minors, so only an admin exports, and it is audited")
    exp.add_argument("--names", default="person",
                     help="class names, comma-separated; labels use class 0 (the base model's "
                     "person class, e.g. Normal,Fall for person-offline)")
    exp.add_argument("--val-share", type=float, default=0.2, help="share of images for val")
    return p


DEFAULT_CONFIGS = ("/etc/pondwatch/server.yaml", "server.yaml")


def _db_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """A config from --config, --database, $PONDWATCH_CONFIG, or the installed server.yaml."""
    if args.config:
        return load_config(args.config)
    url = args.database or os.environ.get("PONDWATCH_DATABASE")
    if url:
        return parse_config({"database": url, "environment": "dev"}, "--database")
    for candidate in (os.environ.get("PONDWATCH_CONFIG"), *DEFAULT_CONFIGS):
        if candidate and os.path.exists(candidate):
            return load_config(candidate)
    raise ConfigError("import: no server config found: give --config server.yaml or "
                      "--database URL, or set PONDWATCH_CONFIG (looked in "
                      + ", ".join(DEFAULT_CONFIGS) + ")")


def _dataset_export(args: argparse.Namespace) -> int:
    """`dataset export`: check the admin, export (0700 folders, 0600 files), then audit it;
    the exit code."""
    from server.access import auth
    from server.core.db import AuditEntry
    from server.fleet.dataset import DatasetError, export
    from server.services import Services

    try:
        since = datetime.fromisoformat(args.since)
    except ValueError:
        print(f"error: --since {args.since!r} is not an ISO 8601 date", file=sys.stderr)
        return 2
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    svc = Services(_db_config(args).model_copy(update={"registry": None}))
    svc.prepare()
    try:
        with svc.sessions() as s:
            password = os.environ.get("PONDWATCH_PASSWORD") or getpass.getpass("password: ")
            user = auth.authenticate(s, args.user, password)
            if user is None or user.role != "admin":
                print("error: 仅管理员 (admins only): wrong user or password, or not an admin",
                      file=sys.stderr)
                return 2
            counts = export(s, since, Path(args.out), args.names.split(","), args.val_share)
            s.add(AuditEntry(at=datetime.now(UTC), username=user.username,
                             action="dataset_export",
                             detail=f"{Path(args.out).resolve()}: {counts.real} real, "
                             f"{counts.background} background, resolved since "
                             f"{since.isoformat()}"[:2000]))
            s.commit()
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        svc.engine.dispose()
    print(f"{args.out}: {counts.real} real, {counts.background} background; train "
          f"{counts.train}, val {counts.val}; skipped {counts.skipped or 'none'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "run":
            cfg = load_config(args.config)
            if args.check_config:
                print(f"{args.config}: OK")
                return 0
            from server.runner import Server
            srv = Server(cfg)
            print(f"PondWatch dashboard: {cfg.http.public_url}/", flush=True)
            return srv.serve_forever()
        if args.command == "import":
            from server.access import registry
            from server.services import Services
            svc = Services(_db_config(args).model_copy(update={"registry": None}))
            svc.prepare()
            counts = registry.import_file(svc.sessions, args.file)
            svc.engine.dispose()
            print("imported: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
            return 0
        if args.command == "adduser":
            from server.access import auth
            from server.services import Services
            svc = Services(load_config(args.config))
            svc.prepare()
            password = os.environ.get("PONDWATCH_PASSWORD") or getpass.getpass("password: ")
            with svc.sessions() as s, s.begin():
                auth.set_user(s, args.username, password, args.role, args.person)
            svc.engine.dispose()
            print(f"user {args.username} ({args.role}) saved")
            return 0
        if args.command == "dataset":
            return _dataset_export(args)
    except ServerError as exc:  # every error the server raises on purpose, said once
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
