"""Replay on generated pond clips (real people pasted at child and adult scale)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import pytest

from edge.config import load_config
from edge.replay import replay
from protocol.limits import MAX_SNAPSHOT_BYTES
from protocol.payloads import CRITICAL_TYPES, Event

from .conftest import Replays

ROOT = Path(__file__).resolve().parents[2]
CHILD_SCENES = {  # scene → children who reach the bank
    "child_to_bank": 1, "child_to_bank_dusk": 1, "child_to_bank_bright": 1,
    "child_leaves": 1, "two_children": 2, "child_with_adult": 1,
}


def kinds(events: list[dict[str, Any]]) -> list[str]:
    """Event types in order."""
    return [e["type"] for e in events]


@pytest.mark.parametrize("scene", sorted(CHILD_SCENES))
def test_every_child_reaching_the_bank_gives_one_event(replayed: Replays, scene: str) -> None:
    """Exactly one child_near_water per child, with a measured child stature."""
    events = replayed(scene)
    child = [e for e in events if e["type"] == "child_near_water"]
    assert len(child) == CHILD_SCENES[scene], kinds(events)
    for e in child:
        assert e["severity"] == "critical" and e["zone"] == "bank" and e["snapshot"] is True
        assert e["possible_child"] is False and 0.9 <= e["stature_m"] <= 1.45
    assert len({e["track_id"] for e in child}) == len(child)


def test_events_are_valid_wire_payloads(replayed: Replays) -> None:
    """Every line is an Event on the wire plus source_t, stamped from the fixed epoch."""
    for line in replayed("child_to_bank"):
        e = dict(line)
        t = e.pop("source_t")
        ev = Event.model_validate(e)
        assert ev.node_id == "scene-child-to-bank"
        assert abs((ev.ts.timestamp() - 1767225600.0) - t) < 1e-3  # 2026-01-01T00:00:00Z


def test_adult_on_bank_gives_no_critical_event(replayed: Replays) -> None:
    """An adult on the bank is information, not an alarm."""
    events = replayed("adult_on_bank")
    assert not [e for e in events if e["type"] in CRITICAL_TYPES], kinds(events)
    near = [e for e in events if e["type"] == "person_near_water"]
    assert len(near) == 1 and near[0]["stature_m"] > 1.45


def test_child_who_leaves_gives_event_end(replayed: Replays) -> None:
    """The child walks back out of view: event_end refers to the child event, after clear_s."""
    events = replayed("child_leaves")
    assert kinds(events) == ["child_near_water", "event_end"]
    first, end = events
    assert end["ref"] == first["id"] and end["severity"] == "clear"
    assert end["source_t"] - first["source_t"] > 3.0


def test_wader_is_person_in_water(replayed: Replays) -> None:
    """A man standing chest deep: person_in_water, and not mistaken for a child on the bank."""
    events = replayed("wader")
    assert kinds(events).count("person_in_water") == 1, kinds(events)
    assert "child_near_water" not in kinds(events)


def test_person_entering_the_water(replayed: Replays) -> None:
    """An adult walking from the bank into the water raises person_in_water."""
    events = replayed("person_into_water")
    assert "person_in_water" in kinds(events), kinds(events)
    assert "person_submerged" not in kinds(events)


def test_person_sinking_out_of_sight(replayed: Replays) -> None:
    """Wades in, sinks: person_in_water, then person_submerged."""
    events = replayed("person_submerged")
    k = kinds(events)
    assert "person_in_water" in k and "person_submerged" in k, k
    assert k.index("person_in_water") < k.index("person_submerged")


def test_empty_scene_gives_nothing(replayed: Replays) -> None:
    """Ripples and sensor noise only: no events."""
    assert replayed("empty_static") == []


def test_snapshots_fit_and_decode(replayed: Replays) -> None:
    """Each snapshot is a JPEG within the wire limit, named by its event id."""
    events = replayed("child_to_bank")
    folder = replayed.out / "child_to_bank"
    for e in events:
        if e["snapshot"]:
            data = (folder / f"{e['id']}.jpg").read_bytes()
            assert 1000 < len(data) <= MAX_SNAPSHOT_BYTES
            assert cv2.imdecode(__import__("numpy").frombuffer(data, "uint8"), 1) is not None


def test_replay_cli_is_byte_identical_to_an_earlier_run(scenes_dir: Path, tmp_path: Path,
                                                       replayed: Replays) -> None:
    """A CLI run in a fresh process writes the very bytes the in-process run wrote."""
    events = replayed("child_leaves")
    assert events
    out = tmp_path / "cli.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "replay", str(scenes_dir / "child_leaves.yaml"),
         "--source", str(scenes_dir / "child_leaves.mp4"), "--events-out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == (replayed.out / "child_leaves.jsonl").read_bytes()


def test_child_walking_in_is_caught_within_the_dwell(scenes_dir: Path,
                                                      replayed: Replays) -> None:
    """The node starts idle; the alert still comes within dwell (+ confirmation) of the
    child's first frame on the bank (ground truth from the generator)."""
    cfg = load_config(scenes_dir / "child_to_bank.yaml")
    truth = json.loads((scenes_dir / "child_to_bank.truth.json").read_text())
    on_bank = min(f["t"] for f in truth["frames"]
                  if any(p["zone"] == "bank" for p in f["persons"]))
    first = next(e for e in replayed("child_to_bank") if e["type"] == "child_near_water")
    assert first["source_t"] - on_bank <= cfg.rules.dwell_s + 0.6


def test_replay_bad_source_exits_nonzero(scenes_dir: Path, tmp_path: Path) -> None:
    """A missing video is an error, not an empty result."""
    cfg = load_config(scenes_dir / "child_to_bank.yaml")
    assert replay(cfg, str(tmp_path / "missing.mp4"), str(tmp_path / "e.jsonl")) == 2


def test_replay_bad_model_exits_nonzero(scenes_dir: Path, tmp_path: Path) -> None:
    """A model file that does not exist is reported, not a crash."""
    cfg = load_config(scenes_dir / "child_to_bank.yaml")
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(
        update={"path": str(tmp_path / "nope.pt")})})
    assert replay(cfg, str(scenes_dir / "child_to_bank.mp4"), str(tmp_path / "e.jsonl")) == 2


def test_supervision_flag_follows_the_scene(replayed: Replays) -> None:
    """An adult walking in beside the child marks it supervised; a lone child is not."""
    assert [e["supervised"] for e in replayed("child_with_adult")
            if e["type"] == "child_near_water"] == [True]
    assert [e["supervised"] for e in replayed("child_to_bank")
            if e["type"] == "child_near_water"] == [False]
