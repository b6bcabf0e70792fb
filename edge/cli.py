"""The pondwatch-edge command line: run, replay, preview, enrol, diag, eval, model."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from edge.config import load_config
from edge.errors import EdgeError
from edge.vision.offline import ultralytics_offline


def _parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    p = argparse.ArgumentParser(prog="pondwatch-edge", description="PondWatch pond node.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="the node service")
    run.add_argument("config")
    run.add_argument("--check-config", action="store_true", help="validate the config and exit")

    rep = sub.add_parser("replay", help="the node pipeline on a recorded video, on its own clock")
    rep.add_argument("config")
    rep.add_argument("--source", required=True, help="video file or image folder")
    rep.add_argument("--events-out", required=True, help="JSON lines output")
    rep.add_argument("--snapshots-dir", help="also write each event's JPEG here")

    pre = sub.add_parser("preview", help="draw zones, equipment and a stature ruler on a frame")
    pre.add_argument("config")
    pre.add_argument("--source", help="image or video (default: the camera)")
    pre.add_argument("--out", required=True, help="PNG to write")

    enr = sub.add_parser("enrol", help="capture equipment references")
    enr.add_argument("config")
    enr.add_argument("--source", help="image, video or camera (default: the camera)")
    enr.add_argument("--frames", type=int, default=15, help="frames to combine")

    dia = sub.add_parser("diag", help="the technician's checklist")
    dia.add_argument("config")
    dia.add_argument("--json", action="store_true", help="machine-readable output")

    ev = sub.add_parser("eval", help="score the node's detection on a YOLO-format folder")
    ev.add_argument("config")
    ev.add_argument("--dataset", required=True, help="folder with images/ and labels/")
    ev.add_argument("--json", dest="json_out", metavar="FILE", help="write the figures as JSON")
    ev.add_argument("--plot", metavar="FILE.png", help="recall / false-detections curve")

    from edge.model.cli import add_parser as add_model_parser
    add_model_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of pondwatch-edge; returns the exit code (2: the node's own error)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ultralytics_offline()
    try:
        return _run(args)
    except EdgeError as exc:  # the one place the node's errors become a message and exit 2
        print(f"错误 / error ({type(exc).__name__}):\n{exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    """Run one subcommand; EdgeError escapes to main."""
    if args.command == "model":
        from edge.model.cli import run as run_model
        return run_model(args)
    cfg = load_config(args.config)
    if args.command == "run":
        if args.check_config:
            print(f"{args.config}: ok")
            return 0
        from edge.service import run_service
        return run_service(cfg, config_path=args.config)
    if args.command == "replay":
        from edge.replay import replay
        return replay(cfg, args.source, args.events_out, snapshots_dir=args.snapshots_dir,
                      config_path=args.config)
    if args.command == "preview":
        from edge.ops.preview import preview
        return preview(cfg, args.source, args.out)
    if args.command == "enrol":
        from edge.site.enrol import enrol
        return enrol(cfg, args.config, source=args.source, frames=args.frames)
    if args.command == "diag":
        from edge.ops.diag import run_diag
        return run_diag(cfg, args.config, as_json=args.json)
    if args.command == "eval":
        from edge.model.eval import run_eval
        return run_eval(cfg, args.dataset, json_out=args.json_out, plot_out=args.plot)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
