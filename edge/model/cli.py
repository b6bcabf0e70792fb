"""pondwatch-edge model list|fetch|verify|export|train|eval|keygen|sign|push: the model lifecycle
commands."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from edge.manifest import (
    Manifest,
    ModelStoreError,
    identify,
    load_manifest,
    manifest_path,
    models_dir,
)
from edge.model import keys as modelkeys
from edge.model import store as modelstore
from edge.trust import check_model, write_record

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx", "openvino", "ncnn")
# Python packages each export needs; Ultralytics would try to pip-install them at run time.
EXPORT_NEEDS = {"onnx": ("onnx",), "openvino": ("openvino",), "ncnn": ("ncnn", "pnnx")}


class Bar:
    """A text progress bar on stderr: redrawn in place on a terminal, a few lines otherwise."""

    WIDTH = 30

    def __init__(self, label: str, out: TextIO | None = None) -> None:
        """A bar titled label."""
        self.label = label
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self._last_pct = -1
        self._t0 = time.monotonic()

    def __call__(self, done: int, total: int | None) -> None:
        """Show done of total bytes (total None: bytes only)."""
        mb = done / 1e6
        if total:
            pct = min(100, int(100 * done / total))
            if not self.tty and pct // 25 == self._last_pct // 25:
                return  # off a terminal: one line per quarter
            fill = self.WIDTH * pct // 100
            text = (f"{self.label} [{'#' * fill}{'.' * (self.WIDTH - fill)}] {pct:3d}% "
                    f"{mb:.1f}/{total / 1e6:.1f} MB")
            self._last_pct = pct
        else:
            text = f"{self.label} {mb:.1f} MB"
        self.out.write(("\r" + text) if self.tty else text + "\n")
        self.out.flush()

    def done(self, message: str = "") -> None:
        """End the bar's line."""
        secs = time.monotonic() - self._t0
        tail = f" {message}" if message else ""
        self.out.write(("\n" if self.tty else "") + f"{self.label}: {secs:.1f} s{tail}\n")
        self.out.flush()


def add_parser(sub: Any) -> None:
    """Register `model` and its subcommands on the pondwatch-edge subparsers."""
    m = sub.add_parser("model", help="list, fetch, verify, export, train or evaluate models",
                       description="模型管理 / the model lifecycle against models/manifest.yaml "
                       "(sha256 always checked).")
    m.add_argument("--dir", help="folder holding the weights (default: $PONDWATCH_MODELS, "
                   "else the source checkout's models/, else ./models)")
    m.add_argument("--manifest", help="manifest file (default: the folder's manifest.yaml, "
                   "else the one shipped with PondWatch)")
    m.add_argument("--trusted-key", action="append", default=[], metavar="KEY",
                   help="public model key a node trusts (ed25519:BASE64 or a .pub file; "
                   "repeatable): what verify, export and train accept besides pinned models")
    m.add_argument("--node-config", help="node config whose model.trusted_keys to use too")
    ms = m.add_subparsers(dest="model_command", required=True)
    modelkeys.add_args(ms)

    ms.add_parser("list", help="the manifest's models and whether each is installed")

    f = ms.add_parser("fetch", help="download a model (or install it from a local file)")
    f.add_argument("name", help="model name from the manifest")
    f.add_argument("--from", dest="from_file", metavar="FILE",
                   help="install from this local file (air-gapped sites); sha256 checked")
    f.add_argument("--timeout", type=float, default=modelstore.CONNECT_TIMEOUT_S,
                   help="connect timeout in seconds (default 5)")
    f.add_argument("--link", action="store_true", help="also point person.pt at it")

    ms.add_parser("verify", help="check every installed model against its sha256, and that a "
                  "node would load it (pinned by PondWatch, or signed by a trusted key)")

    e = ms.add_parser("export", help="export a model for the node (onnx, openvino, ncnn)")
    e.add_argument("name", help="model name from the manifest")
    e.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="target format")
    e.add_argument("--imgsz", type=int, default=640, help="input size (multiple of 32)")

    v = ms.add_parser("eval", help="measure a model on the validation sets (the gate's figures)")
    v.add_argument("name", help="model name from the manifest")
    v.add_argument("--config", required=True, help="node config whose detection path is scored "
                   "(a set with its own `config` in the sets file uses that one)")
    v.add_argument("--sets", default=str(models_dir() / "validation.yaml"),
                   help="validation sets file")
    v.add_argument("--set", action="append", default=[], metavar="NAME",
                   help="only these sets (repeatable; default: all)")
    v.add_argument("--record", action="store_true",
                   help="write the figures into the model's manifest entry")

    u = ms.add_parser("push", help="upload a model and its manifest entry to the server (admins)")
    u.add_argument("name", help="model name from the manifest")
    u.add_argument("--server", required=True, help="server base URL, e.g. https://pw.county")
    u.add_argument("--user", required=True, help="admin user (password from PONDWATCH_PASSWORD "
                   "or a prompt)")
    u.add_argument("--ca-file", help="CA bundle for an https server")

    a = ms.add_parser("add", help="register weights trained with a recipe outside `model train`")
    a.add_argument("name", help="name of the new model")
    a.add_argument("--file", required=True, help="the trained weights (.pt)")
    a.add_argument("--base", required=True, help="manifest model it was fine-tuned from")
    a.add_argument("--data", required=True, help="the DATASET.yaml it was trained on")
    a.add_argument("--epochs", type=int, required=True, help="epochs it was trained for")
    a.add_argument("--imgsz", type=int, required=True, help="training image size")
    a.add_argument("--freeze", type=int, help="layers frozen, if not the recipe's")
    a.add_argument("--batch", type=int, help="batch size, if not the recipe's")
    from edge.model.train import default_recipe
    a.add_argument("--recipe", default=str(default_recipe()),
                   help="recipe file it was trained with")

    t = ms.add_parser("train", help="fine-tune a model with the domain recipe")
    from edge.model.train import add_train_args
    add_train_args(t)


def run(args: argparse.Namespace) -> int:
    """Run one model subcommand; exit code 0 ok, 1 failed, 2 bad input (ModelStoreError
    escapes to pondwatch-edge's main, which exits 2)."""
    if args.dir is None:  # resolved here: train, push and eval --record read them from args
        args.dir = str(models_dir())
    if args.manifest is None:
        args.manifest = str(manifest_path(args.dir))
    manifest = load_manifest(args.manifest)
    cmd = args.model_command
    if cmd == "keygen":
        return modelkeys.run_keygen(args)
    if cmd == "sign":
        return modelkeys.run_sign(args, manifest)
    if cmd == "list":
        return _list(manifest, Path(args.dir))
    if cmd == "fetch":
        return _fetch(args, manifest)
    if cmd == "verify":
        return _verify(manifest, Path(args.dir), modelkeys.trust_settings(args))
    if cmd == "export":
        return _export(args, manifest)
    if cmd == "eval":
        return _eval(args, manifest)
    if cmd == "add":
        from edge.model.train import run_add
        return run_add(args, manifest)
    if cmd == "push":
        from edge.model.push import push
        return push(args, manifest)
    if cmd == "train":
        from edge.model.train import run_train
        return run_train(args, manifest)
    raise AssertionError(args.model_command)


def _list(manifest: Manifest, folder: Path) -> int:
    """Print name, installed state, licence and file of every model."""
    states = {i.name: i.state for i in modelstore.check_installed(folder, manifest)}
    person = folder / "person.pt"
    current = identify(person, manifest) if person.exists() else None
    print(f"{'name':<20} {'state':<11} {'licence':<12} file")
    for name, entry in sorted(manifest.models.items()):
        mark = " (person.pt)" if name == current else ""
        print(f"{name:<20} {states[name]:<11} {entry.licence:<12} {entry.file}{mark}")
    return 0


def _fetch(args: argparse.Namespace, manifest: Manifest) -> int:
    """Fetch or install one model with a progress bar."""
    bar = Bar(f"{args.name}")
    path = modelstore.fetch(args.name, args.dir, manifest, timeout=args.timeout, progress=bar,
                            from_file=args.from_file)
    bar.done("sha256 ok")
    if args.link:
        modelstore.link_person(path, Path(args.dir))
    print(f"{path}: ok")
    return 0


def _verify(manifest: Manifest, folder: Path, keys: modelkeys.Keys) -> int:
    """Check every installed model; exit 1 when one does not match its sha256 or a node with
    keys would refuse it (neither pinned nor signed by one of them)."""
    bad = 0
    installed = 0
    for item in modelstore.check_installed(folder, manifest):
        if item.state == "missing":
            continue
        installed += 1
        if item.state == "mismatch":
            bad += 1
            expected = manifest.models[item.name].sha256
            print(f"{item.name}: 校验失败 / MISMATCH {item.path}: sha256 {item.sha256}, "
                  f"manifest {expected}")
        elif item.state == "unverified":
            print(f"{item.name}: no sha256 in the manifest; file has {item.sha256}")
        else:
            print(f"{item.name}: ok")
        trusted, why = modelkeys.trust_line(item.path, manifest.models[item.name], keys)
        print(f"{item.name}: {why}")
        bad += 0 if trusted else 1
    if installed == 0:
        print(f"no model of the manifest is installed in {folder}", file=sys.stderr)
        return 1
    return 1 if bad else 0


def validation_sets(path: str | Path, only: list[str] | None = None
                    ) -> dict[str, tuple[Path, Path | None]]:
    """Set name -> (folder, its own eval config or None) from the validation sets file (paths
    relative to it)."""
    import yaml

    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        sets = {str(k): ((p.parent / str(v["dir"])).resolve(),
                         (p.parent / str(v["config"])).resolve() if v.get("config") else None)
                for k, v in raw["sets"].items()}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ModelStoreError(f"{p}: cannot read validation sets ({exc})") from exc
    unknown = sorted(set(only or []) - set(sets))
    if unknown:
        raise ModelStoreError(f"unknown set(s) {unknown}; {p} has {sorted(sets)}")
    chosen = {k: v for k, v in sets.items() if not only or k in only}
    missing = [f"{k} ({v[0]})" for k, v in chosen.items() if not v[0].is_dir()]
    missing += [f"{k} config ({v[1]})" for k, v in chosen.items() if v[1] and not v[1].is_file()]
    if missing:
        raise ModelStoreError(f"validation folder(s) missing: {', '.join(missing)}")
    return chosen


def _num(v: Any) -> str:
    """A figure with three decimals, or n/a."""
    return f"{v:.3f}" if isinstance(v, int | float) else "n/a"


def _eval(args: argparse.Namespace, manifest: Manifest) -> int:
    """Score a model on the validation sets; optionally record the figures in the manifest."""
    from edge.model.train import measure

    model = modelstore.resolve(args.name, args.dir, manifest)
    figures: dict[str, dict[str, Any]] = {}
    for name, (folder, config) in validation_sets(args.sets, args.set).items():
        # a set's own config (land photos need a bank zone) wins over --config
        figures.update(measure(model.path, model.labels, config or args.config, {name: folder}))
    for name, f in figures.items():
        sizes = " ".join(f"{k} {_num(v)}" for k, v in f["by_size"].items())
        print(f"{name}: recall {_num(f['recall'])} precision {_num(f['precision'])} "
              f"false/image {_num(f['false_per_image'])} (recall by size: {sizes})")
    if args.record:
        modelstore.record_eval(args.manifest, args.name, figures)
        print(f"figures recorded in {args.manifest} under {args.name}.eval")
    return 0


def _export(args: argparse.Namespace, manifest: Manifest) -> int:
    """Export a verified model with Ultralytics; print the node config lines for it."""
    if args.imgsz % 32 or not 64 <= args.imgsz <= 1920:
        print("--imgsz must be a multiple of 32 between 64 and 1920", file=sys.stderr)
        return 2
    missing = [m for m in EXPORT_NEEDS[args.format] if importlib.util.find_spec(m) is None]
    if missing:
        print(f"导出 {args.format} 需要 / exporting to {args.format} needs the Python "
              f"package(s) {', '.join(missing)}: pip install {' '.join(missing)}", file=sys.stderr)
        return 1
    model = modelstore.resolve(args.name, args.dir, manifest)
    verdict = check_model(model.path, modelkeys.trust_settings(args))  # before unpickling
    out = export_model(model.path, args.format, args.imgsz)
    record = write_record(out, verdict)  # the node loads this export as it trusted its .pt
    print(f"{record}: trust record ({verdict.how})", file=sys.stderr)
    ident = modelstore.describe(out, manifest)
    print(json.dumps({"path": str(out), "format": ident.format, "imgsz": args.imgsz,
                      "sha256": ident.sha256}))
    print(f"# node config:\nmodel:\n  path: {out}\n  imgsz: {args.imgsz}", file=sys.stderr)
    return 0


def export_model(pt: Path, fmt: str, imgsz: int) -> Path:
    """Export pt to fmt at imgsz (written beside pt, as Ultralytics names it); its path."""
    from ultralytics import YOLO  # type: ignore[attr-defined]

    bar = Bar(f"export {pt.name} -> {fmt} @ {imgsz}")
    bar.out.write(f"{bar.label}: 导出中 / exporting (a minute or two on a Pi)…\n")
    kw: dict[str, Any] = {"format": fmt, "imgsz": imgsz}
    if fmt == "onnx":   # any input size: the zones' region at imgsz, zoom windows at theirs
        kw["simplify"] = importlib.util.find_spec("onnxslim") is not None
        kw["dynamic"] = True
    try:
        out = Path(YOLO(str(pt), task="detect").export(**kw))
    except Exception as exc:  # Ultralytics raises many types for a failed export
        raise ModelStoreError(f"export of {pt} to {fmt} failed: {exc}") from exc
    bar.done(str(out))
    return out
