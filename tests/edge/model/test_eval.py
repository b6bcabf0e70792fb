"""pondwatch-edge eval: the node's own detection step scored on a YOLO folder of real photos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.cli import main as edge_main
from edge.model.eval import Sample, matches, read_labels, score, size_of

DATA = Path(__file__).resolve().parents[2] / "data" / "water-people"


def test_found_by_iou_or_by_covering_half() -> None:
    """IoU >= 0.3 finds a person; so does a box covering half of them; a sliver does not."""
    gt = (0.2, 0.2, 0.4, 0.6)
    assert matches((0.2, 0.2, 0.4, 0.6), gt)
    assert matches((0.25, 0.3, 0.45, 0.7), gt)                 # shifted, IoU ~0.45
    assert matches((0.0, 0.0, 1.0, 1.0), gt)                   # covers it all, IoU 0.08
    assert not matches((0.38, 0.2, 0.6, 0.6), gt)             # a sliver
    assert not matches((0.5, 0.5, 0.7, 0.9), gt)


def test_sizes_and_scores() -> None:
    """Small < 1 % of the image, medium < 10 %; recall, precision and false per image."""
    small, medium, large = (0, 0, 0.05, 0.1), (0, 0, 0.2, 0.3), (0.5, 0.5, 1.0, 1.0)
    assert [size_of(b) for b in (small, medium, large)] == ["small", "medium", "large"]
    samples = [Sample("a", [small, large], [(0.9, large), (0.2, small), (0.6, (0.6, 0, 0.7, 0.1))]),
               Sample("b", [medium], [])]
    hi = score(samples, 0.5)
    assert hi["recall"] == pytest.approx(1 / 3) and hi["false_per_image"] == pytest.approx(0.5)
    assert hi["precision"] == pytest.approx(0.5)
    assert hi["by_size"]["large"] == {"recall": 1.0, "n": 1}
    assert hi["by_size"]["small"] == {"recall": 0.0, "n": 1}
    lo = score(samples, 0.1)
    assert lo["by_size"]["small"]["recall"] == 1.0 and lo["recall"] == pytest.approx(2 / 3)


def test_labels_are_read_and_bad_lines_named(tmp_path: Path) -> None:
    """cx cy w h become corners; a malformed line names the file and line."""
    good = tmp_path / "a.txt"
    good.write_text("0 0.5 0.5 0.2 0.4\n\n")
    assert read_labels(good) == [pytest.approx((0.4, 0.3, 0.6, 0.7))]
    assert read_labels(tmp_path / "none.txt") == []
    bad = tmp_path / "b.txt"
    bad.write_text("0 0.5 0.5 0.2 0.4\n0 half 0.5 0.2 0.4\n")
    with pytest.raises(ValueError, match="b.txt:2"):
        read_labels(bad)


def _config(tmp_path: Path, model_path: Path, **model: Any) -> Path:
    """A node config whose whole picture is water, with the shipped defaults otherwise."""
    raw = {"node_id": "eval-test", "pond_id": "p", "camera": {"source": "unused.mp4"},
           "model": {"path": str(model_path), "labels": {"person": ["person", "Normal", "Fall"]},
                     **model},
           "zones": {"water": [[0, 0], [1, 0], [1, 1], [0, 1]]},
           "outbox": str(tmp_path / "outbox.db")}
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_eval_command_on_real_photos(tmp_path: Path, model_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 0; text report, JSON with the documented keys, a PNG curve; figures agree."""
    cfg = _config(tmp_path, model_path)
    out, png = tmp_path / "eval.json", tmp_path / "curve.png"
    assert edge_main(["eval", str(cfg), "--dataset", str(DATA), "--json", str(out),
                      "--plot", str(png)]) == 0
    text = capsys.readouterr()
    assert "recall" in text.out and "false per image" in text.out
    assert "5/5" in text.err                                  # the progress bar
    r = json.loads(out.read_text())
    for key in ("recall", "precision", "false_per_image", "by_size", "curve"):
        assert key in r
    assert set(r["by_size"]) == {"small", "medium", "large"}
    assert all(set(v) == {"recall", "n"} for v in r["by_size"].values())
    assert r["images"] == 5 and r["people"] == 5
    assert r["recall"] >= 0.6           # measured: 4 of 5 (the kickboard swimmer is missed)
    assert r["false_per_image"] == 0.0  # rings, a float and kickboards are not people
    confs = [c["conf"] for c in r["curve"]]
    assert confs == sorted(confs) and confs[0] == 0.05
    recalls = [c["recall"] for c in r["curve"]]
    assert recalls == sorted(recalls, reverse=True)           # lower conf finds more
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"


def test_eval_uses_the_configured_operating_point(tmp_path: Path, model_path: Path) -> None:
    """model.conf is the operating point the headline figures are given at."""
    cfg = _config(tmp_path, model_path, conf=0.65)
    out = tmp_path / "eval.json"
    assert edge_main(["eval", str(cfg), "--dataset", str(DATA), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["conf"] == 0.65
    at = next(c for c in r["curve"] if c["conf"] == 0.65)
    assert at["recall"] == r["recall"] and r["recall"] < 0.6


def test_bad_dataset_is_refused_clearly(tmp_path: Path, model_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Not a YOLO folder: exit 2 and a message naming what is missing."""
    cfg = _config(tmp_path, model_path)
    assert edge_main(["eval", str(cfg), "--dataset", str(tmp_path / "nowhere")]) == 2
    assert "images/ and labels/" in capsys.readouterr().err


def test_score_at_per_zone_operating_points() -> None:
    """With a point per zone, a 0.2 swimmer counts (water 0.15) and a 0.2 ghost on the bank
    does not (bank 0.30); one conf for both would keep both or neither."""
    swimmer = (0.4, 0.7, 0.5, 0.8)
    ghost = (0.1, 0.1, 0.2, 0.3)
    samples = [Sample("a", [swimmer], [(0.2, swimmer), (0.2, ghost)])]
    at = score(samples, 0.30, lambda b: 0.15 if b[3] > 0.6 else 0.30)
    assert (at["recall"], at["false_per_image"]) == (1.0, 0.0)
    assert score(samples, 0.15)["false_per_image"] == 1.0
    assert score(samples, 0.30)["recall"] == 0.0
