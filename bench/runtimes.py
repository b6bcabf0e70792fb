#!/usr/bin/env python3
"""Run-time benchmark: `pondwatch-edge eval` recall of a .pt and its ONNX / NCNN exports.

Side by side in one process on the same images: the node's detection step (eval.collect,
eval.score at the model's operating point) on the Ultralytics run time (.pt) and on the
torch-free onnxruntime and ncnn ones. Exports are made as `pondwatch-edge model export` makes
them (build/exports/, with the node's trust record). Heavy: run it with `nice`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.vision.offline import ultralytics_offline  # noqa: E402

ultralytics_offline()

from edge.config import NodeConfig, load_config  # noqa: E402
from edge.model.eval import collect, dataset_images, score  # noqa: E402
from edge.vision.detector import load_detector  # noqa: E402

SETS = {"land": ("../shared/datasets/land-people/valid", "bench/eval/land.yaml"),
        "water": ("../shared/datasets/water-people/valid", "bench/eval/water.yaml")}


def exports_of(pt: Path, formats: list[str]) -> dict[str, Path]:
    """The .pt and its exports (made once into build/exports/, with trust records)."""
    from edge.config import ModelConfig
    from edge.model.cli import export_model
    from edge.trust import check_model, record_path, write_record
    folder = ROOT / "build" / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    local = folder / pt.name
    if not local.exists():
        shutil.copy(pt, local)
    out = {"pt": local}
    for fmt in formats:
        target = folder / (f"{pt.stem}.onnx" if fmt == "onnx" else f"{pt.stem}_ncnn_model")
        if not record_path(target).exists():
            target = export_model(local, fmt, 640)
            write_record(target, check_model(local, ModelConfig(path=str(local))))
        out[fmt] = target
    return out


def main() -> int:
    """Print and write (JSON) recall per set and run time."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="models/person-offline.pt")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--formats", nargs="+", default=["onnx", "ncnn"], choices=["onnx", "ncnn"])
    ap.add_argument("--limit", type=int, default=0, help="first N images of each set (0: all)")
    ap.add_argument("--json-out", default="build/bench-runtimes.json")
    args = ap.parse_args()
    from edge.config import DEFAULT_CONF
    from edge.manifest import operating_conf
    files = exports_of((ROOT / args.model).resolve(), args.formats)
    conf = operating_conf(str(ROOT / args.model)) or DEFAULT_CONF
    results: dict[str, Any] = {"machine": platform.platform(), "cpus": os.cpu_count(),
                               "load_at_start": os.getloadavg(), "model": args.model, "sets": {}}
    for name in args.sets:
        data, cfg_path = SETS[name]
        base: NodeConfig = load_config(ROOT / cfg_path)
        images = dataset_images(ROOT / data)[: args.limit or None]
        row: dict[str, Any] = {}
        for kind, path in files.items():
            cfg = base.model_copy(update={"model": base.model.model_copy(
                update={"path": str(path), "runtime": None, "conf": conf})})
            det = load_detector(cfg.model)
            t0 = time.perf_counter()
            samples = collect(cfg, det, images)
            s = score(samples, cfg.model.conf)
            row[kind] = {"recall": round(s["recall"], 4), "precision": round(s["precision"], 4),
                         "false_per_image": round(s["false_per_image"], 3),
                         "people": s["people"], "images": s["images"], "conf": s["conf"],
                         "s_per_image": round((time.perf_counter() - t0) / len(images), 3)}
            print(name, kind, json.dumps(row[kind]), flush=True)
        results["sets"][name] = row
    results["load_at_end"] = os.getloadavg()
    Path(ROOT / args.json_out).write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
