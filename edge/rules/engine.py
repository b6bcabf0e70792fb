"""Per-track rule state machines: confirmation, dwell, visits, re-announce, submerged."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge.config import NodeConfig
from edge.vision.geometry import (
    BANK,
    WATER,
    Pt,
    StatureModel,
    cut_vertically,
    distance,
    foot_point,
    same_object,
    touches_border,
    zone_of,
)
from edge.vision.types import Detection
from protocol.payloads import Event, EventType, new_event_id

log = logging.getLogger(__name__)

PERSON_MEANINGS = frozenset({"person", "child"})
REACQUIRE_RADIUS = 0.15  # a new track this close to where a visit was last seen continues it
SUPERVISE_RADIUS = 0.20  # an adult this close to a child's feet counts as supervising
MAX_SAMPLES = 60

IdFactory = Callable[[str, int | None, float], str]


def random_ids(kind: str, track_id: int | None, t: float) -> str:
    """A fresh random event id: the ids of a live node (replay passes its own)."""
    return new_event_id()


@dataclass
class TrackState:
    """What the rules know about one tracker id."""

    tid: int
    first_t: float
    last_t: float
    foot: Pt = (0.0, 0.0)
    zone: str | None = None
    border: bool = False
    hits: int = 0
    confirmed: bool = False
    model_child: bool = False
    near_since: float | None = None   # continuously on the bank or in the water since
    water_since: float | None = None  # continuously in the water since
    bank_since: float | None = None   # continuously on the bank since
    statures: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # detection confidences, newest last
    raw_max: float = 0.0  # tallest estimate from any box, cut or not
    submerged_id: str | None = None
    reacquired: bool = False
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def stature_m(self) -> float | None:
        """Median of the clean stature samples."""
        return statistics.median(self.statures) if self.statures else None


@dataclass
class Visit:
    """One alert's life: opened once, continued by re-acquired tracks, ended after clear_s."""

    kind: EventType
    event_id: str
    tids: set[int]
    start_t: float
    last_t: float
    foot: Pt
    announced_t: float
    held: bool = False  # someone vanished in the water: do not end quietly
    repeats: int = 0


class RuleEngine:
    """Turns tracked detections over time into protocol events."""

    def __init__(self, cfg: NodeConfig, stature: StatureModel | None,
                 ids: IdFactory = random_ids) -> None:
        """Rules for one node; ids makes event ids (deterministic in replay)."""
        self.cfg = cfg
        self.rules = cfg.rules
        self.stature = stature
        self.ids = ids
        self.tracks: dict[int, TrackState] = {}
        self.visits: list[Visit] = []

    # ---- classification -------------------------------------------------------------------

    def is_child(self, tr: TrackState) -> bool | None:
        """Child by the model's class or calibrated stature; None while not measurable.

        Boxes cut by the frame edge or by the water only ever look too short, so one of them
        taller than child_max_m still proves an adult.
        """
        if tr.model_child or self.stature is None:
            return True
        s = tr.stature_m()
        if s is not None:
            return s <= self.cfg.stature.child_max_m
        if tr.raw_max > self.cfg.stature.child_max_m:
            return False
        return None

    def _child_fields(self, tr: TrackState) -> dict[str, Any]:
        """stature_m and possible_child for an event about this track."""
        s = tr.stature_m()
        out: dict[str, Any] = {"possible_child": self.stature is None or (
            s is None and not tr.model_child)}
        if s is not None:
            out["stature_m"] = round(min(s, 4.0), 2)
        return out

    def _supervised(self, child: TrackState, t: float) -> bool | None:
        """An adult stands near the child now; None when adults cannot be told apart.

        Unconfirmed adults count: the flag never suppresses an alarm, and an adult walking
        in beside the child is often still unconfirmed when the child's dwell is reached.
        """
        if self.stature is None:
            return None
        for other in self.tracks.values():
            if (other is not child and other.hits > 0 and other.last_t == t
                    and self.is_child(other) is False
                    and distance(other.foot, child.foot) <= SUPERVISE_RADIUS):
                return True
        return False

    # ---- per-frame updates ----------------------------------------------------------------

    def update(self, t: float, wall: datetime, detections: Iterable[Detection]) -> list[Event]:
        """Feed one frame's tracked detections; returns the events it raises."""
        seen: list[TrackState] = []
        for det in detections:
            if det.track_id is None or det.meaning not in PERSON_MEANINGS:
                continue
            seen.append(self._observe(det, t))
        events = self._check_reacquired(t, wall, seen)
        for tr in seen:
            if tr.confirmed:
                events += self._present(tr, t, wall)
        return events + self.tick(t, wall)

    def _observe(self, det: Detection, t: float) -> TrackState:
        """Update one track's state from a detection."""
        assert det.track_id is not None
        tr = self.tracks.get(det.track_id)
        if tr is None:
            tr = self.tracks[det.track_id] = TrackState(det.track_id, first_t=t, last_t=t)
        tr.last_t, tr.box = t, det.box
        tr.foot = foot_point(det.box)
        tr.zone = zone_of(tr.foot, self.cfg)
        tr.border = touches_border(det.box)
        tr.hits += 1
        tr.scores.append(det.conf)
        del tr.scores[:-MAX_SAMPLES]
        conf = self.cfg.model.conf_at(tr.zone)   # swimmers are judged at the water's point
        if det.meaning == "child" and det.conf >= conf:
            tr.model_child = True
        if (not tr.confirmed and tr.hits >= self.rules.confirm_frames
                and statistics.median(tr.scores) >= conf):
            tr.confirmed = True   # Frigate's rule: a true positive on the median score, once
            log.debug("track %d confirmed at %.2f s (median score %.2f)", tr.tid, t,
                      statistics.median(tr.scores))
        near = tr.zone in (BANK, WATER)
        tr.near_since = (tr.near_since if tr.near_since is not None else t) if near else None
        in_water = tr.zone == WATER
        tr.water_since = (tr.water_since if tr.water_since is not None else t) if in_water else None
        on_bank = tr.zone == BANK
        tr.bank_since = (tr.bank_since if tr.bank_since is not None else t) if on_bank else None
        s = self.stature.stature_m(det.box) if self.stature is not None else None
        if s is not None:
            tr.raw_max = max(tr.raw_max, s)
            if tr.zone != WATER and not cut_vertically(det.box):
                tr.statures.append(s)
                del tr.statures[:-MAX_SAMPLES]
        return tr

    def _kinds(self, tr: TrackState, t: float) -> list[tuple[EventType, bool]]:
        """(visit kind, dwell reached) for the visit this track is present for now: anyone in
        the water is one person_in_water (a child too, with the child flag); child_near_water
        and person_near_water are for the bank."""
        out = []
        dwell = self.rules.dwell_s
        if tr.water_since is not None:
            return [(EventType.PERSON_IN_WATER, t - tr.water_since >= dwell)]
        child = self.is_child(tr)
        if child or child is None:
            if tr.bank_since is not None:
                out.append((EventType.CHILD_NEAR_WATER, t - tr.bank_since >= dwell))
        elif tr.bank_since is not None:
            out.append((EventType.PERSON_NEAR_WATER, t - tr.bank_since >= dwell))
        return out

    def _present(self, tr: TrackState, t: float, wall: datetime) -> list[Event]:
        """Continue, re-acquire or open the visits this track is present for."""
        events: list[Event] = []
        for kind, dwelled in self._kinds(tr, t):
            visit = next((v for v in self.visits if v.kind == kind and tr.tid in v.tids), None)
            if visit is None:
                visit = self._nearby_open(kind, tr, t)
                if visit is not None:
                    log.info("track %d continues %s %s", tr.tid, kind.value, visit.event_id)
                    visit.tids.add(tr.tid)
            if visit is None:
                if not dwelled or self._part_of_visited(kind, tr, t):
                    continue
                eid = self.ids(kind.value, tr.tid, t)
                visit = Visit(kind, eid, {tr.tid}, t, t, tr.foot, t)
                self.visits.append(visit)
                events.append(self._event(kind, tr, t, wall, id=eid))
                log.info("%s track %d at %.2f s: %s", kind.value, tr.tid, t, eid)
                continue
            visit.last_t, visit.foot, visit.held = t, tr.foot, False
            if kind == EventType.CHILD_NEAR_WATER and t - visit.announced_t >= \
                    self.rules.reannounce_s:
                visit.announced_t = t
                visit.repeats += 1
                eid = self.ids(f"{kind.value}-repeat{visit.repeats}", tr.tid, t)
                events.append(self._event(kind, tr, t, wall, id=eid, repeat_of=visit.event_id,
                                          reason=f"still there after {t - visit.start_t:.0f} s"))
        return events

    def _nearby_open(self, kind: EventType, tr: TrackState, t: float) -> Visit | None:
        """An open visit of this kind whose people are not seen now, last seen close by: the
        tracker lost its person, this track is them."""
        best, best_d = None, REACQUIRE_RADIUS
        for v in self.visits:
            if v.kind != kind or v.last_t >= t:
                continue
            if any(self.tracks[i].last_t == t for i in v.tids if i in self.tracks):
                continue
            d = distance(v.foot, tr.foot)
            if d <= best_d:
                best, best_d = v, d
        return best

    def _part_of_visited(self, kind: EventType, tr: TrackState, t: float) -> bool:
        """True when this track's box is (mostly) the box of someone seen now in an open visit
        of this kind: a split or a box around two people, not a new person."""
        for v in self.visits:
            if v.kind != kind:
                continue
            for i in v.tids:
                other = self.tracks.get(i)
                if other is None or other is tr or other.last_t != t:
                    continue
                if same_object(tr.box, other.box):
                    return True
        return False

    def _event(self, kind: EventType | str, tr: TrackState | None, t: float, wall: datetime,
               **fields: Any) -> Event:
        """An event about a track with the fields its kind carries."""
        if tr is not None:
            fields.setdefault("track_id", tr.tid)
            if kind in (EventType.CHILD_NEAR_WATER, EventType.PERSON_IN_WATER,
                        EventType.PERSON_NEAR_WATER, EventType.PERSON_SUBMERGED):
                fields.setdefault("zone", tr.zone or WATER)
                fields.update({k: v for k, v in self._child_fields(tr).items()
                               if kind == EventType.CHILD_NEAR_WATER or k == "stature_m"})
            if kind in (EventType.PERSON_IN_WATER, EventType.PERSON_SUBMERGED):
                child = self.is_child(tr) if self.stature is not None or tr.model_child else None
                if child is not None:
                    fields.setdefault("child", child)
            if kind == EventType.CHILD_NEAR_WATER:
                sup = self._supervised(tr, t)
                if sup is not None:
                    fields["supervised"] = sup
        return Event.make(kind, self.cfg.node_id, self.cfg.pond_id, ts=wall, **fields)

    def _check_reacquired(self, t: float, wall: datetime, seen: list[TrackState]) -> list[Event]:
        """Someone who vanished in the water is seen again close by: not (or no longer) lost."""
        events: list[Event] = []
        for lost in self.tracks.values():
            if lost.last_t >= t or lost.zone != WATER or lost.reacquired or not lost.confirmed:
                continue
            for tr in seen:
                if tr.tid != lost.tid and tr.first_t > lost.last_t and \
                        distance(tr.foot, lost.foot) <= REACQUIRE_RADIUS and tr.confirmed:
                    lost.reacquired = True
                    ref = lost.submerged_id
                    if ref is not None:
                        events.append(self._event(EventType.EVENT_END, tr, t, wall,
                                                  id=self.ids(f"end-{ref}", tr.tid, t),
                                                  ref=ref, reason="resurfaced"))
                    break
        return events

    def tick(self, t: float, wall: datetime) -> list[Event]:
        """Time-driven rules (submerged, ends); call every frame, detected or not."""
        events: list[Event] = []
        for tr in list(self.tracks.values()):
            gone = t - tr.last_t
            if (tr.confirmed and tr.zone == WATER and not tr.border and not tr.reacquired
                    and tr.submerged_id is None and gone >= self.rules.submerged_s):
                tr.submerged_id = self.ids(EventType.PERSON_SUBMERGED.value, tr.tid, t)
                events.append(self._event(EventType.PERSON_SUBMERGED, tr, t, wall,
                                          id=tr.submerged_id, reason=f"not seen for {gone:.1f} s"))
                log.warning("track %d submerged at %.2f s", tr.tid, t)
                for v in self.visits:
                    if tr.tid in v.tids:
                        v.held = True
            keep = max(self.rules.clear_s, self.rules.submerged_s) * 2 + 5
            if gone > keep and tr.submerged_id is None:
                del self.tracks[tr.tid]
        for v in list(self.visits):
            if v.held or t - v.last_t < self.rules.clear_s:
                continue
            self.visits.remove(v)
            tid = min(v.tids) if v.tids else None
            events.append(Event.make(
                EventType.EVENT_END, self.cfg.node_id, self.cfg.pond_id, ts=wall,
                id=self.ids(f"end-{v.event_id}", tid, t), ref=v.event_id, track_id=tid,
                reason=f"{v.kind.value} clear for {self.rules.clear_s:g} s"))
            log.info("%s %s ended at %.2f s", v.kind.value, v.event_id, t)
        return events

    def in_water(self) -> bool:
        """True while a confirmed person is (or was last) in the water and not accounted for."""
        return any(tr.confirmed and tr.zone == WATER and not tr.reacquired
                   and tr.submerged_id is None for tr in self.tracks.values())

    def reset(self) -> None:
        """Forget tracks (tracker ids restart) but keep open visits to end them properly."""
        self.tracks.clear()
        for v in self.visits:
            v.tids.clear()
