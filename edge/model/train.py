"""pondwatch-edge model train: the domain fine-tune recipe around Ultralytics training."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from edge.manifest import Manifest, ModelEntry, ModelStoreError, Source, entry_of, models_dir
from edge.model import store as modelstore
from edge.model.keys import sign_file, trust_settings
from edge.trust import check_model
from protocol import signing
from protocol.digest import sha256_file
from protocol.validation import StrictModel, field_errors, read_yaml

log = logging.getLogger(__name__)

NAME_RE = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class Recipe(StrictModel):
    """The Ultralytics train arguments of a fine-tune recipe (models/recipes/*.yaml)."""

    optimizer: Literal["AdamW", "Adam", "SGD", "auto"] = Field(description="Optimizer.")
    lr0: float = Field(gt=0, lt=1, description="Initial learning rate.")
    lrf: float = Field(gt=0, le=1, description="Final learning rate as a share of lr0.")
    warmup_epochs: float = Field(ge=0, description="Warm-up epochs (0: none).")
    cos_lr: bool = Field(description="Cosine learning-rate schedule.")
    freeze: int = Field(ge=0, le=30, description="Layers frozen from the start (10: backbone).")
    mosaic: float = Field(ge=0, le=1, description="Mosaic augmentation probability.")
    close_mosaic: int = Field(ge=0, description="Last epochs without mosaic.")
    patience: int = Field(ge=0, description="Early-stopping patience (0: off).")
    workers: int = Field(ge=0, le=16, description="Data-loader workers.")
    batch: int = Field(ge=1, le=256, description="Batch size.")
    amp: bool = Field(description="Mixed precision (off on CPU).")
    plots: bool = Field(description="Write training plots.")
    val: bool = Field(description="Validate after each epoch.")
    deterministic: bool = Field(description="Deterministic algorithms.")
    seed: int = Field(ge=0, description="Random seed.")
    cache: bool = Field(description="Cache images in memory.")
    hsv_h: float | None = Field(None, ge=0, le=1, description="Hue jitter (None: default).")
    hsv_s: float | None = Field(None, ge=0, le=1, description="Saturation jitter.")
    hsv_v: float | None = Field(None, ge=0, le=1, description="Value jitter.")
    fliplr: float | None = Field(None, ge=0, le=1, description="Horizontal flip probability.")


def default_recipe() -> Path:
    """The domain fine-tune recipe of the models folder (models/recipes/domain-finetune.yaml)."""
    return models_dir() / "recipes" / "domain-finetune.yaml"


def load_recipe(path: str | Path | None = None) -> Recipe:
    """Read and validate a recipe file (default: default_recipe()); ModelStoreError naming the
    field."""
    path = Path(path) if path is not None else default_recipe()
    raw = read_yaml(path, ModelStoreError)
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        raise ModelStoreError(field_errors(exc, f"{path}:")) from exc


def add_train_args(p: argparse.ArgumentParser) -> None:
    """The arguments of `model train`."""
    p.add_argument("--data", required=True, help="Ultralytics DATASET.yaml")
    p.add_argument("--base", required=True, help="manifest model to fine-tune from")
    p.add_argument("--epochs", type=int, required=True, help="training epochs")
    p.add_argument("--imgsz", type=int, required=True, help="training image size")
    p.add_argument("--freeze", type=int, help="layers to freeze (recipe default: 10, backbone)")
    p.add_argument("--name", help="name of the new model (default: BASE-ft-YYYYmmddHHMM)")
    p.add_argument("--recipe", default=str(default_recipe()), help="recipe file")
    p.add_argument("--batch", type=int, help="batch size (recipe default 16)")
    p.add_argument("--workdir", help="Ultralytics run folder (default: a temporary folder)")
    p.add_argument("--eval-config", help="node config whose detection path `eval` scores")
    p.add_argument("--eval-set", action="append", default=[], metavar="NAME=DIR",
                   help="validation set to measure the new model on (repeatable)")
    p.add_argument("--sign-key", help="sign the new model and its entry with this key (the "
                   "county's, from `model keygen`): nodes load only pinned or signed models")


def _eval_sets(items: list[str]) -> dict[str, Path]:
    """NAME=DIR pairs; ModelStoreError for a malformed one or a missing folder."""
    out: dict[str, Path] = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ModelStoreError(f"--eval-set {item!r}: expected NAME=DIR")
        if not Path(folder).is_dir():
            raise ModelStoreError(f"--eval-set {name}: {folder} is not a folder")
        out[name] = Path(folder)
    return out


def measure(weights: Path, labels: dict[str, list[str]], config: str | Path,
            sets: dict[str, Path], trusted: list[str] | None = None
            ) -> dict[str, dict[str, Any]]:
    """`pondwatch-edge eval` on each set with weights swapped into config (its trusted keys,
    plus trusted); figures by set."""
    raw = yaml.safe_load(Path(config).read_text())
    raw.setdefault("model", {})
    raw["model"]["path"] = str(weights.resolve())
    raw["model"]["labels"] = labels
    here = Path(config).resolve().parent  # the copy lives elsewhere: key paths made absolute
    raw["model"]["trusted_keys"] = [
        k if k.startswith(signing.KEY_PREFIX) else str(here / k)
        for k in raw["model"].get("trusted_keys") or []] + list(trusted or [])
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="pondwatch-eval-") as tmp:
        cfg = Path(tmp) / "node.yaml"
        cfg.write_text(yaml.safe_dump(raw, allow_unicode=True))
        for name, folder in sets.items():
            out = Path(tmp) / f"{name}.json"
            cmd = [sys.executable, "-m", "edge.cli", "eval", str(cfg), "--dataset", str(folder),
                   "--json", str(out)]
            print(f"eval {weights.name} on {name} ({folder})", file=sys.stderr, flush=True)
            # stderr passes through: eval's own progress bar and any error it prints
            proc = subprocess.run(cmd, stdout=subprocess.DEVNULL)
            if proc.returncode != 0 or not out.is_file():
                raise ModelStoreError(f"eval of {weights.name} on {name} failed (exit "
                                      f"{proc.returncode}; its messages are above)")
            data = json.loads(out.read_text())
            results[name] = {
                "recall": data["recall"], "precision": data.get("precision"),
                "false_per_image": data.get("false_per_image"),
                "by_size": {k: v.get("recall") for k, v in data.get("by_size", {}).items()},
                "dataset": str(folder), "sha256": sha256_file(weights)}
    return results


def train(base: modelstore.ResolvedModel, data: Path, epochs: int, imgsz: int, recipe: Recipe,
          workdir: Path, freeze: int | None = None, batch: int | None = None) -> Path:
    """Fine-tune base on data with the recipe; the best weights of the run."""
    from ultralytics import YOLO  # type: ignore[attr-defined]

    args = recipe.model_dump(exclude_none=True)
    if freeze is not None:
        args["freeze"] = freeze
    if batch is not None:
        args["batch"] = batch
    model = YOLO(str(base.path), task="detect")
    # verbose: Ultralytics' own progress bars per epoch; device left to Ultralytics, as in
    # the run that produced pond-person-v1
    model.train(data=str(data), epochs=epochs, imgsz=imgsz, project=str(workdir), name="run",
                exist_ok=True, verbose=True, **args)
    weights = workdir / "run" / "weights"
    best = weights / "best.pt"
    if not best.is_file():
        best = weights / "last.pt"
    if not best.is_file():
        raise ModelStoreError(f"training wrote no weights under {weights}")
    return best


def run_train(args: argparse.Namespace, manifest: Manifest) -> int:
    """`model train`: train, copy the weights into the models folder, add a manifest entry."""
    import re

    if args.epochs < 1 or args.imgsz % 32 or not 64 <= args.imgsz <= 1920:
        print("--epochs must be ≥ 1 and --imgsz a multiple of 32 in 64..1920", file=sys.stderr)
        return 2
    data = Path(args.data)
    if not data.is_file():
        raise ModelStoreError(f"--data {data}: no such file")
    recipe = load_recipe(args.recipe)
    base = modelstore.resolve(args.base, args.dir, manifest)
    check_model(base.path, trust_settings(args))  # the base is unpickled: trusted first
    name = args.name or f"{args.base}-ft-{datetime.now(UTC):%Y%m%d%H%M}"
    if not re.match(NAME_RE, name):
        raise ModelStoreError(f"--name {name!r}: use lower-case letters, digits, - _ .")
    if name in manifest.models:
        raise ModelStoreError(f"model {name!r} is already in the manifest; choose another --name")
    sets = _eval_sets(args.eval_set)
    if sets and not args.eval_config:
        raise ModelStoreError("--eval-set needs --eval-config (the node config to score with)")
    if sets and not args.sign_key:
        raise ModelStoreError("--eval-set needs --sign-key: eval loads the new model through "
                              "the node's detector, which takes only pinned or signed models")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="pw-train-"))
    try:
        best = train(base, data, args.epochs, args.imgsz, recipe, workdir, args.freeze,
                     args.batch)
        final = Path(args.dir) / f"{name}.pt"
        shutil.copyfile(best, final)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    entry = new_entry(final, base.name, manifest, data, recipe, args)
    if sets:
        sign_file(final, name, entry, args.sign_key)  # eval's detector checks it; re-signed
        pub = signing.public_text(signing.load_private(args.sign_key).public_key())
        entry = entry.model_copy(update={"eval": measure(final, entry.labels, args.eval_config,
                                                         sets, [pub])})
    modelstore.add_entry(args.manifest, name, entry)
    sig = sign_file(final, name, entry, args.sign_key) if args.sign_key else None
    print(json.dumps({"name": name, "file": str(final), "sha256": entry.sha256,
                      "eval": entry.eval, "signature": str(sig) if sig else None},
                     ensure_ascii=False))
    return 0


def run_add(args: argparse.Namespace, manifest: Manifest) -> int:
    """`model add`: copy weights trained with a recipe elsewhere and record their entry."""
    import re

    src = Path(args.file)
    if not src.is_file():
        raise ModelStoreError(f"--file {src}: no such file")
    if not re.match(NAME_RE, args.name) or args.name in manifest.models:
        raise ModelStoreError(f"{args.name!r}: not a free model name (lower-case letters, "
                              "digits, - _ .)")
    entry_of(args.base, manifest)
    recipe = load_recipe(args.recipe)
    final = Path(args.dir) / f"{args.name}.pt"
    if final.exists() and final.resolve() != src.resolve():
        raise ModelStoreError(f"{final} exists; remove it or choose another name")
    if final.resolve() != src.resolve():  # weights already in place are recorded as they are
        shutil.copyfile(src, final)
    entry = new_entry(final, args.base, manifest, Path(args.data), recipe, args, "model add")
    modelstore.add_entry(args.manifest, args.name, entry)
    print(json.dumps({"name": args.name, "file": str(final), "sha256": entry.sha256,
                      "size_mb": round(final.stat().st_size / 1e6, 1)}))
    return 0


def new_entry(weights: Path, base: str, manifest: Manifest, data: Path, recipe: Recipe,
              args: argparse.Namespace, how: str = "model train") -> ModelEntry:
    """The manifest entry of freshly trained weights."""
    from ultralytics import YOLO  # type: ignore[attr-defined]

    names = {int(k): str(v) for k, v in YOLO(str(weights), task="detect").names.items()}
    parent = manifest.models[base]
    used = recipe.model_dump(exclude_none=True)
    used.update({"recipe_file": Path(args.recipe).name, "epochs": args.epochs,
                 "imgsz": args.imgsz})
    if args.freeze is not None:
        used["freeze"] = args.freeze
    if args.batch is not None:
        used["batch"] = args.batch
    return ModelEntry(
        file=weights.name, source=Source(kind="local"), sha256=sha256_file(weights),
        licence=parent.licence, architecture=parent.architecture, classes=names,
        labels={"person": sorted(set(names.values()))}, base=base, data=[str(data)],
        recipe=used, trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        notes=f"Fine-tuned from {base} with the recipe; recorded by `pondwatch-edge {how}`.")
