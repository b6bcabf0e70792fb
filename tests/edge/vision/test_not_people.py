"""Things that are not people never page: real photos, filters, the enrolled background."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.config import NodeConfig, load_config
from edge.model.eval import matches, read_labels
from edge.rules.pipeline import Pipeline
from edge.vision.types import Candidate
from edge.vision.windows import detect_people, passes_filters
from tests.edge.conftest import T0

DATA = Path(__file__).resolve().parents[2] / "data" / "water-people"
EVAL_CFG = Path(__file__).resolve().parents[3] / "bench" / "eval" / "water.yaml"


@pytest.fixture(scope="module")
def still_cfg() -> NodeConfig:
    """The eval config: the whole picture is water, shipped defaults otherwise."""
    return load_config(EVAL_CFG)


def _false(cfg: NodeConfig, detector: Any, img: np.ndarray, people: Sequence[Any]) -> list[Any]:
    """Detections at the operating point that are nobody's box."""
    dets = [d for d in detect_people(cfg, detector, img) if d.conf >= cfg.model.conf]
    return [d for d in dets if not any(matches(d.box, g) for g in people)]


def test_rings_floats_and_boards_are_not_people(still_cfg: NodeConfig, detector: Any) -> None:
    """Lifebuoys, an orange float and kickboards beside real swimmers: no false person,
    and the swimmers themselves are found (so the check is not vacuous)."""
    found = 0
    for img_path in sorted((DATA / "images").glob("*.jpg")):
        img = cv2.imread(str(img_path))
        people = read_labels(DATA / "labels" / f"{img_path.stem}.txt")
        assert _false(still_cfg, detector, img, people) == [], img_path.name
        dets = [d for d in detect_people(still_cfg, detector, img)
                if d.conf >= still_cfg.model.conf]
        found += sum(any(matches(d.box, g) for d in dets) for g in people)
    assert found >= 4


def test_the_bus_is_not_a_person(still_cfg: NodeConfig, detector: Any, assets: Path) -> None:
    """bus.jpg: every person box is one of its people; the bus and the bollards are none."""
    from bench.land_set import PHOTOS
    img = cv2.imread(str(assets / "bus.jpg"))
    h, w = img.shape[:2]
    people = [(x1 / w, y1 / h, x2 / w, y2 / h) for x1, y1, x2, y2 in PHOTOS["bus.jpg"]]
    assert _false(still_cfg, detector, img, people) == []


class OneBox:
    """A model that always sees one box (pixels of the crop) and nothing else."""

    def __init__(self, box: tuple[float, float, float, float], conf: float = 0.8) -> None:
        self.box, self.conf = box, conf

    def predict(self, crops: Sequence[np.ndarray], imgsz: int, floor: float
                ) -> list[list[Candidate]]:
        return [[Candidate(self.box, self.conf, 0)]] + [[] for _ in crops[1:]]

    def label(self, c: Candidate, w: int, h: int) -> Any:
        from edge.vision.types import Detection
        b = c.box
        return Detection(None, "person", "Normal", c.conf, (b[0] / w, b[1] / h, b[2] / w,
                                                             b[3] / h))


@pytest.mark.parametrize(("box", "kept"), [
    ((100, 100, 140, 220), True),       # a standing person, 1:3
    ((100, 100, 400, 190), False),      # a parked car lying wide, 3.3:1
    ((0, 0, 960, 540), False),          # the whole frame
    ((100, 100, 103, 104), False),      # a speck below min_area
])
def test_per_object_filters(make_cfg: Callable[..., NodeConfig], box: tuple[float, ...],
                            kept: bool) -> None:
    """Frigate-style min/max area and aspect ratio drop what cannot be a person."""
    cfg = make_cfg(model={"max_ratio": 3.0, "min_area": 0.0001, "zones_region": False,
                          "zoom_windows": 0})
    frame = np.zeros((540, 960, 3), np.uint8)
    dets = detect_people(cfg, OneBox(box), frame)   # type: ignore[arg-type]
    assert bool(dets) is kept
    b = box
    assert passes_filters((b[0] / 960, b[1] / 540, b[2] / 960, b[3] / 540), 960, 540,
                          cfg) is kept


def test_crossed_filter_bounds_are_refused(make_cfg: Callable[..., NodeConfig]) -> None:
    """min above max is a config error naming the fields."""
    with pytest.raises(ValueError, match="min_area/min_ratio"):
        make_cfg(model={"min_ratio": 3.0, "max_ratio": 2.0})


def _figure_clip(seconds: float, child: bool) -> list[np.ndarray]:
    """The meadow pond with a life-size figure board of a person (a real photo) standing on
    the bank all the time; optionally a real child walking onto the bank from t = 1 s."""
    from scripts.make_scenes import NOISE, background, cutouts, paste
    from scripts.scene_table import CHILD_M, PONDS
    bg, water = background(PONDS["meadow"])
    cuts = cutouts()
    wy = int(PONDS["meadow"].water_y * bg.shape[0])
    frames = []
    for i in range(int(seconds * 5)):
        t = i / 5
        f = bg.copy()
        f[wy:] = water[:, :bg.shape[1]]
        paste(f, cuts["bus1"], 1.75, 0.80, 0.56, 0.0, False)
        if child and t >= 1.0:
            x = min(0.40, -0.04 + 0.44 * (t - 1.0) / 4.0)
            paste(f, cuts["bus0"], CHILD_M, x, 0.33 + (0.56 - 0.33) * min(1.0, (t - 1) / 4),
                  0.0, False)
        frames.append(np.clip(f + NOISE[i % len(NOISE)], 0, 255).astype(np.uint8))
    return frames


def _alarms(cfg: NodeConfig, detector: Any, frames: list[np.ndarray],
            view: np.ndarray | None) -> list[str]:
    """Event types from the pipeline over the frames, with the given enrolled view."""
    detector.reset()
    pipe = Pipeline(cfg, detector, snapshots=False, empty_view=view, idle=False)
    out = []
    for i, f in enumerate(frames):
        out += [em.event.type.value for em in pipe.process(f, i / 5,
                                                           T0 + timedelta(seconds=i / 5))]
    return out


def test_figure_board_enrolled_with_the_empty_scene_is_background(
        scenes_dir: Path, detector: Any) -> None:
    """A person-shaped board that was there at enrolment never pages; a real child does.

    Without the enrolled view the board is a 'person' standing on the bank: that is the
    alarm the background rule removes.
    """
    from edge.camera.health import WORK_W
    cfg = load_config(scenes_dir / "child_to_bank.yaml")
    still = _figure_clip(6.0, child=False)
    median = np.median(np.stack(still[:15]), axis=0).astype(np.uint8)
    h, w = median.shape[:2]
    view = cv2.cvtColor(cv2.resize(median, (WORK_W, round(h * WORK_W / w)),
                                   interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    assert _alarms(cfg, detector, still, None) == ["person_near_water"]
    assert _alarms(cfg, detector, still, view) == []
    walk = _figure_clip(9.0, child=True)
    assert _alarms(cfg, detector, walk, view) == ["child_near_water"]


NOT_PEOPLE = Path(__file__).resolve().parents[2] / "data" / "not-people"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> tuple[NodeConfig, Any]:
    """The eval config running the manifest's default model (what a node ships with) at its
    own operating points (bank and water, from its manifest entry), and its detector."""
    import yaml

    from edge.vision.detector import UltralyticsDetector
    root = Path(__file__).resolve().parents[3]
    manifest = yaml.safe_load((root / "models" / "manifest.yaml").read_text(encoding="utf-8"))
    raw = yaml.safe_load(EVAL_CFG.read_text(encoding="utf-8"))
    raw["model"]["path"] = str(root / "models" / manifest["models"][manifest["default"]]["file"])
    raw["outbox"] = str(tmp_path_factory.mktemp("shipped") / "outbox.db")
    path = tmp_path_factory.mktemp("shipped") / "node.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    cfg = load_config(path)
    return cfg, UltralyticsDetector(cfg.model)


KNOWN_LOOKALIKES = pytest.mark.xfail(strict=True, reason=(
    "known failure, models/README.md: every model here takes a floating red-and-white "
    "lifebuoy for a swimmer (pond-person-v2 0.63, v1 0.46, person-offline 0.41) and v2 the "
    "orange float at 0.17, over its water point 0.15; no real negatives of floating kit were "
    "in the training mix. strict: this test says so when a model stops doing it"))


@pytest.mark.parametrize("photo", [
    pytest.param("ring-floating.jpg", marks=KNOWN_LOOKALIKES),
    pytest.param("float-orange.jpg", marks=KNOWN_LOOKALIKES),
    "kickboard.jpg"])
def test_floating_things_are_nobody_to_the_shipped_model(shipped: tuple[NodeConfig, Any],
                                                         photo: str) -> None:
    """A lifebuoy floating on a lake, an orange float and a kickboard (real photos, nobody in
    them): the shipped model at its operating point finds no person."""
    cfg, detector = shipped
    img = cv2.imread(str(NOT_PEOPLE / photo))
    conf = cfg.model.conf_at("water")    # the whole picture is water
    dets = [d for d in detect_people(cfg, detector, img) if d.conf >= conf]
    assert dets == [], [(round(d.conf, 2), d.box) for d in dets]


@KNOWN_LOOKALIKES
def test_a_drifting_ring_never_becomes_a_person_in_the_water(
        shipped: tuple[NodeConfig, Any]) -> None:
    """The real floating lifebuoy drifting through the view for 12 s (a window panning over the
    photo) through the node's whole pipeline: no event at all."""
    cfg, detector = shipped
    photo = cv2.imread(str(DATA / "images" / "0072.jpg"))
    h, w = photo.shape[:2]
    side = 240
    water = photo[h - side:, :int(w * 0.34)]     # the ring and open water, nobody
    water = cv2.copyMakeBorder(water, 0, 0, side, 0, cv2.BORDER_REFLECT)
    span = water.shape[1] - side
    frames = [cv2.resize(water[:, span * i // 59:span * i // 59 + side], (480, 480))
              for i in range(60)]               # 12 s at 5 fps, the ring drifting across
    assert _alarms(cfg, detector, frames, None) == []


def test_the_swimmer_beside_the_ring_is_raised(shipped: tuple[NodeConfig, Any]) -> None:
    """The swimmer in the same photo, through the same pipeline, is a person in the water (so
    the drifting-ring check above is not vacuous)."""
    cfg, detector = shipped
    photo = cv2.imread(str(DATA / "images" / "0072.jpg"))
    h, w = photo.shape[:2]
    x0 = int(w * 0.36)
    swimmer = [cv2.resize(photo[h - 324:, x0:x0 + 324], (480, 480))] * 30
    assert "person_in_water" in _alarms(cfg, detector, swimmer, None)
