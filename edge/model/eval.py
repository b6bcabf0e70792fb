"""pondwatch-edge eval: the node's own detection step scored on a YOLO-format folder."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.config import NodeConfig
from edge.errors import EdgeError
from edge.vision.detector import DetectorError, load_detector
from edge.vision.geometry import foot_point, zone_of
from edge.vision.types import Detector
from edge.vision.windows import detect_people, iou_and_inside

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
FOUND_IOU = 0.3       # a person is found by a detection with this IoU ...
FOUND_COVER = 0.5     # ... or one covering at least half of the person's box
SMALL, MEDIUM = 0.01, 0.10   # box area as a share of the image: small < 1 %, medium < 10 %
CURVE_FLOOR = 0.05
CURVE = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8)
Box = tuple[float, float, float, float]


class DatasetError(EdgeError, ValueError):
    """A dataset folder that is not in YOLO format."""


@dataclass(frozen=True)
class Sample:
    """One image's ground truth and the detections (conf, box) at the curve's floor."""

    name: str
    truth: list[Box]
    dets: list[tuple[float, Box]]


def read_labels(path: Path) -> list[Box]:
    """YOLO label lines `cls cx cy w h` (normalised) as x1, y1, x2, y2 boxes."""
    out: list[Box] = []
    if not path.exists():
        return out
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            cx, cy, bw, bh = (float(v) for v in parts[1:5])
        except ValueError as exc:
            raise DatasetError(f"{path}:{n}: expected 'class cx cy w h', got {line!r}") from exc
        if len(parts) < 5:
            raise DatasetError(f"{path}:{n}: expected 'class cx cy w h', got {line!r}")
        out.append((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2))
    return out


def dataset_images(root: Path) -> list[Path]:
    """The images of a YOLO folder (root/images/*); labels are root/labels/<stem>.txt."""
    images = root / "images"
    if not images.is_dir() or not (root / "labels").is_dir():
        raise DatasetError(f"{root}: needs images/ and labels/ folders (YOLO format)")
    found = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise DatasetError(f"{images}: no images")
    return found


def matches(det: Box, gt: Box) -> bool:
    """True when det finds the person gt (IoU >= 0.3 or >= half of gt covered)."""
    iou, cover = iou_and_inside(gt, det)  # cover: the share of gt inside det
    return iou >= FOUND_IOU or cover >= FOUND_COVER


def size_of(gt: Box) -> str:
    """small, medium or large by the box's share of the image area."""
    area = (gt[2] - gt[0]) * (gt[3] - gt[1])
    return "small" if area < SMALL else "medium" if area < MEDIUM else "large"


def score(samples: Sequence[Sample], conf: float,
          conf_at: Callable[[Box], float] | None = None) -> dict[str, Any]:
    """Recall, precision, false detections per image and recall by size at one conf (or at
    conf_at(box) for each detection: the node's per-zone operating points)."""
    found = {"small": 0, "medium": 0, "large": 0}
    total = {"small": 0, "medium": 0, "large": 0}
    n_det = n_false = 0
    for s in samples:
        dets = [b for c, b in s.dets if c >= (conf_at(b) if conf_at else conf)]
        n_det += len(dets)
        n_false += sum(1 for d in dets if not any(matches(d, g) for g in s.truth))
        for g in s.truth:
            k = size_of(g)
            total[k] += 1
            found[k] += any(matches(d, g) for d in dets)
    people = sum(total.values())
    return {
        "conf": conf, "images": len(samples), "people": people, "detections": n_det,
        "recall": sum(found.values()) / people if people else 0.0,
        "precision": (n_det - n_false) / n_det if n_det else 1.0,
        "false_per_image": n_false / len(samples) if samples else 0.0,
        "by_size": {k: {"recall": found[k] / total[k] if total[k] else None, "n": total[k]}
                    for k in total},
    }


def collect(cfg: NodeConfig, detector: Detector, images: Sequence[Path],
            progress: Callable[[int, int], None] | None = None) -> list[Sample]:
    """Run the node's detection step on every image, down to the curve's floor."""
    import cv2
    floor = min(CURVE_FLOOR, cfg.model.conf, cfg.model.conf_at("water"))
    samples = []
    for i, path in enumerate(images):
        frame = cv2.imread(str(path))
        if frame is None:
            raise DatasetError(f"{path}: not a readable image")
        dets = detect_people(cfg, detector, frame, floor)
        people = [(d.conf, d.box) for d in dets if d.meaning in ("person", "child")]
        truth = read_labels(path.parent.parent / "labels" / f"{path.stem}.txt")
        samples.append(Sample(path.name, truth, people))
        if progress is not None:
            progress(i + 1, len(images))
    return samples


def report(samples: Sequence[Sample], cfg: NodeConfig, dataset: str) -> dict[str, Any]:
    """The operating point's figures plus the curve over conf."""
    m = cfg.model
    per_zone = m.conf_water is not None and m.conf_water != m.conf
    out = score(samples, m.conf,
                (lambda b: m.conf_at(zone_of(foot_point(b), cfg))) if per_zone else None)
    if per_zone:
        out["conf_water"] = m.conf_water
    out["dataset"] = dataset
    out["model"] = Path(cfg.model.path).name
    out["imgsz"] = cfg.model.imgsz
    out["curve"] = [{k: v for k, v in score(samples, c).items()
                     if k in ("conf", "recall", "precision", "false_per_image", "by_size")}
                    for c in sorted(set(CURVE) | {cfg.model.conf}) if c >= CURVE_FLOOR]
    return out


def _pct(v: float | None) -> str:
    """A share as a percentage, or a dash."""
    return "   -  " if v is None else f"{100 * v:5.1f}%"


def render(r: dict[str, Any]) -> str:
    """The report as text: the operating point, then the curve."""
    bs = r["by_size"]
    lines = [
        f"数据集 / dataset: {r['dataset']} ({r['images']} images, {r['people']} people)",
        f"模型 / model: {r['model']} imgsz {r['imgsz']}, 工作点 / operating point conf "
        f"{r['conf']:g}" + (f", 水中 / in the water {r['conf_water']:g}" if "conf_water" in r
                           else ""),
        f"召回率 / recall {_pct(r['recall'])}   精确率 / precision {_pct(r['precision'])}   "
        f"每图误检 / false per image {r['false_per_image']:.2f}",
        "按大小召回 / recall by size: " + "   ".join(
            f"{k} {_pct(bs[k]['recall'])} (n={bs[k]['n']})" for k in ("small", "medium", "large")),
        "",
        "  conf  recall  precision  false/img   small  medium   large",
    ]
    for c in r["curve"]:
        b = c["by_size"]
        mark = " <" if abs(c["conf"] - r["conf"]) < 1e-9 else ""
        lines.append(f"  {c['conf']:4.2f}  {_pct(c['recall'])}   {_pct(c['precision'])}"
                     f"      {c['false_per_image']:5.2f}  {_pct(b['small']['recall'])} "
                     f"{_pct(b['medium']['recall'])} {_pct(b['large']['recall'])}{mark}")
    return "\n".join(lines)


def plot(r: dict[str, Any], path: str) -> None:
    """Recall (overall and small) against false detections per image, one point per conf."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    xs = [c["false_per_image"] for c in r["curve"]]
    ax.plot(xs, [c["recall"] for c in r["curve"]], "o-", label="recall")
    ax.plot(xs, [c["by_size"]["small"]["recall"] or 0.0 for c in r["curve"]], "s--",
            label="small-box recall")
    for c in r["curve"]:
        ax.annotate(f"{c['conf']:g}", (c["false_per_image"], c["recall"]), fontsize=7)
    ax.axvline(r["false_per_image"], color="grey", lw=0.8, ls=":")
    ax.set_xlabel("false detections per image")
    ax.set_ylabel("recall")
    ax.set_ylim(0, 1)
    ax.set_title(f"{r['dataset']}: {r['model']} imgsz {r['imgsz']} (conf {r['conf']:g} dotted)",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _bar(done: int, total: int) -> None:
    """A one-line progress bar on stderr (every 20th image when stderr is not a terminal)."""
    if not sys.stderr.isatty() and done != total and done % 20:
        return
    frac = done / total
    n = int(30 * frac)
    sys.stderr.write(f"\r[{'#' * n}{'.' * (30 - n)}] {done}/{total}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def run_eval(cfg: NodeConfig, dataset: str, json_out: str | None = None,
             plot_out: str | None = None, detector: Detector | None = None) -> int:
    """pondwatch-edge eval; exit 0 on success, 2 on a bad dataset or model."""
    root = Path(dataset)
    try:
        images = dataset_images(root)
        det = detector if detector is not None else load_detector(cfg.model)
        samples = collect(cfg, det, images, _bar)
    except (DatasetError, DetectorError) as exc:
        print(f"eval: {exc}", file=sys.stderr)
        return 2
    r = report(samples, cfg, str(root))
    print(render(r))
    if json_out:
        Path(json_out).write_text(json.dumps(r, indent=1, ensure_ascii=False), encoding="utf-8")
    if plot_out:
        plot(r, plot_out)
    return 0

