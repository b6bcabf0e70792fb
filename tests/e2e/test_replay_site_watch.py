"""`pondwatch-edge enrol` then `replay` on the kit and camera clips: the whole node pipeline,
detector included, raises the rescue-kit and camera-health events (issue 4, item 5)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from edge.cli import main

KIT_SCENES = ["lifebuoy_removed", "lifebuoy_brief", "lifebuoy_occluded", "brightness_ramp",
              "lens_covered", "camera_nudged"]


@pytest.fixture(scope="module")
def enrolled(scenes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the scene configs with references enrolled from the empty pond clip."""
    d = tmp_path_factory.mktemp("site")
    for name in KIT_SCENES:
        raw = yaml.safe_load((scenes_dir / f"{name}.yaml").read_text())
        for section, key in (("camera", "source"), ("model", "path")):
            raw[section][key] = str((scenes_dir / raw[section][key]).resolve())
        raw["outbox"] = str(d / f"{name}.db")
        (d / f"{name}.yaml").write_text(yaml.safe_dump(raw))
        assert main(["enrol", str(d / f"{name}.yaml"),
                     "--source", str(scenes_dir / "empty_static.mp4")]) == 0
    return d


def replayed(enrolled: Path, scenes_dir: Path, name: str) -> list[dict[str, object]]:
    out = enrolled / f"{name}.jsonl"
    assert main(["replay", str(enrolled / f"{name}.yaml"), "--source",
                 str(scenes_dir / f"{name}.mp4"), "--events-out", str(out)]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def kinds(events: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(e["type"], e.get("item") or e.get("reason")) for e in events
            if e["type"] in ("equipment_missing", "equipment_restored", "camera_fault",
                             "camera_ok")]


def test_lifebuoy_removed_gives_one_missing_event_after_the_threshold(
        enrolled: Path, scenes_dir: Path) -> None:
    events = replayed(enrolled, scenes_dir, "lifebuoy_removed")
    assert kinds(events) == [("equipment_missing", "lifebuoy")]
    truth = json.loads((scenes_dir / "lifebuoy_removed.truth.json").read_text())
    gone = min(f["t"] for f in truth["frames"] if not f["lifebuoy"])
    [missing] = [e for e in events if e["type"] == "equipment_missing"]
    assert float(missing["source_t"]) >= gone + 5.0  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["lifebuoy_brief", "lifebuoy_occluded", "brightness_ramp"])
def test_no_kit_event_when_nothing_is_missing(enrolled: Path, scenes_dir: Path,
                                              name: str) -> None:
    assert kinds(replayed(enrolled, scenes_dir, name)) == []


def test_lens_covered_is_a_camera_fault_then_ok(enrolled: Path, scenes_dir: Path) -> None:
    events = replayed(enrolled, scenes_dir, "lens_covered")
    assert kinds(events) == [("camera_fault", "covered"),
                             ("camera_ok", "recovered from covered")]
    fault, ok = [e for e in events if e["type"] in ("camera_fault", "camera_ok")]
    assert ok["ref"] == fault["id"]


def test_camera_nudged_is_view_moved(enrolled: Path, scenes_dir: Path) -> None:
    assert ("camera_fault", "view_moved") in kinds(replayed(enrolled, scenes_dir,
                                                           "camera_nudged"))


def test_site_events_are_identical_across_replays(enrolled: Path, scenes_dir: Path) -> None:
    first = replayed(enrolled, scenes_dir, "lens_covered")
    shutil.copy(enrolled / "lens_covered.jsonl", enrolled / "first.jsonl")
    assert replayed(enrolled, scenes_dir, "lens_covered") == first
