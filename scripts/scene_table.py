"""The scene table for make_scenes.py: pond backgrounds, their calibration, and the clips."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

W, H, FPS = 960, 540, 5
LIFEBUOY_ROI = (0.055, 0.30, 0.09, 0.20)  # x, y, w, h around the ring on its post
SIGN_ROI = (0.80, 0.12, 0.14, 0.22)
CHILD_M, ADULT_M = 1.10, 1.75
Curve = Callable[[float], float]
# A texture layer: scikit-image texture name, BGR tint, brightness range lo..hi.
Tex = tuple[str, tuple[float, float, float], float, float]


@dataclass(frozen=True)
class Pond:
    """One background: field above, bank between, water below (normalised rows) + calibration.

    Pixels per metre of body height for a foot at row y: ppm0 + ppm_slope * (y - ppm_row).
    """

    name: str
    about: str
    field_end: float
    water_y: float
    ppm0: float
    ppm_slope: float
    ppm_row: float
    field_tex: Tex
    bank_tex: Tex
    water_tex: Tex
    water_blur: float = 3.0
    edge_amp: float = 5.0          # ragged field/bank edge: sine amplitude (px) and period
    edge_period: float = 37.0
    wave_amp: float = 12.0
    wall_px: int = 0               # a stone embankment face just above the water, px tall
    reeds: bool = False
    ref_rows: tuple[float, float] = (0.60, 0.48)   # foot rows of the two calibration poles

    def ppm(self, y: float) -> float:
        """Pixels per metre of body height for a foot at normalised row y."""
        return self.ppm0 + self.ppm_slope * (y - self.ppm_row)

    def zone(self, y: float) -> str:
        """The zone a foot at normalised row y stands in."""
        return "water" if y >= self.water_y else "bank" if y >= self.field_end else "field"


PONDS = {p.name: p for p in (
    Pond("meadow", "Grass field, grey gravel bank, blue-grey water.", 0.40, 0.66,
         110.0, 200.0, 0.32, ("grass", (60, 150, 90), 0.45, 1.0),
         ("gravel", (120, 150, 170), 0.55, 1.05), ("gravel", (150, 110, 60), 0.5, 0.9)),
    Pond("shore", "Dry grass, a high brown earth-and-gravel bank, dark green-brown water; "
         "camera closer, steeper view.", 0.34, 0.60, 100.0, 250.0, 0.34,
         ("grass", (70, 150, 150), 0.40, 0.95), ("gravel", (70, 105, 140), 0.40, 0.95),
         ("gravel", (55, 95, 80), 0.45, 0.85), water_blur=4.0, edge_amp=9.0,
         edge_period=53.0, wave_amp=8.0, ref_rows=(0.56, 0.44)),
    Pond("quay", "A paved promenade, a low grey stone quay with a brick face and reeds, "
         "grey-green water; camera farther.", 0.46, 0.72, 95.0, 260.0, 0.40,
         ("moon", (150, 160, 165), 0.55, 1.0), ("brick", (140, 145, 150), 0.50, 1.0),
         ("gravel", (110, 125, 95), 0.55, 0.95), water_blur=2.0, edge_amp=1.0,
         edge_period=90.0, wave_amp=10.0, wall_px=16, reeds=True, ref_rows=(0.68, 0.52)),
)}


@dataclass
class Actor:
    """One pasted person: keyframes (t, x, y, depth_m) of the surface foot point."""

    src: str
    stature_m: float
    keys: Sequence[tuple[float, float, float, float]]
    flip: bool = False

    def at(self, t: float) -> tuple[float, float, float] | None:
        """Interpolated (x, y, depth) at time t, or None outside the keyframes."""
        if t < self.keys[0][0] or t > self.keys[-1][0]:
            return None
        for a, b in zip(self.keys, self.keys[1:], strict=False):
            if a[0] <= t <= b[0]:
                f = 0.0 if b[0] == a[0] else (t - a[0]) / (b[0] - a[0])
                return tuple(a[i] + f * (b[i] - a[i]) for i in (1, 2, 3))  # type: ignore[return-value]
        k = self.keys[-1]
        return k[1], k[2], k[3]


@dataclass
class Scene:
    """A clip: duration, actors, and what happens to the kit and the camera over time."""

    name: str
    duration_s: float
    about: str
    actors: list[Actor] = field(default_factory=list)
    lifebuoy: Callable[[float], bool] = lambda t: True
    gain: Curve = lambda t: 1.0
    covered: Callable[[float], bool] = lambda t: False
    shift: Callable[[float], tuple[float, float, float]] = lambda t: (0.0, 0.0, 0.0)
    expect: list[dict[str, Any]] = field(default_factory=list)
    equipment_fast: bool = False
    pond: str = "meadow"
    haze: float = 0.0              # overcast: share of flat grey mixed in (less contrast)


def _ramp(points: Sequence[tuple[float, float]]) -> Curve:
    """Piecewise-linear curve through (t, value) points."""
    ts, vs = [p[0] for p in points], [p[1] for p in points]
    return lambda t: float(np.interp(t, ts, vs))


def _const(g: float) -> Curve:
    """A constant light level."""
    return lambda t: g


def meadow_scenes() -> list[Scene]:
    """The original clips on the meadow pond (names and content are relied upon by tests)."""
    child_walk = [(1.0, -0.04, 0.33, 0), (6.0, 0.42, 0.56, 0), (13.9, 0.45, 0.56, 0)]
    return [
        Scene("child_to_bank", 14, "A child walks from the field onto the bank and stays ~8 s.",
              [Actor("bus0", CHILD_M, child_walk)], expect=[{"type": "child_near_water"}]),
        Scene("adult_on_bank", 12, "An adult walks along the bank and stays.",
              [Actor("bus1", ADULT_M, [(1, 1.04, 0.54, 0), (5, 0.60, 0.55, 0),
                                       (11.9, 0.58, 0.55, 0)], flip=True)],
              expect=[{"type": "person_near_water"}]),
        Scene("child_leaves", 18, "A child comes onto the bank, then walks back out of view.",
              [Actor("bus0", CHILD_M, [(1, -0.04, 0.33, 0), (5, 0.40, 0.56, 0), (9, 0.42, 0.56, 0),
                                       (13, -0.10, 0.36, 0)])],
              expect=[{"type": "child_near_water"}, {"type": "event_end"}]),
        Scene("person_into_water", 14, "An adult walks from the bank into the water, waist deep.",
              [Actor("bus0", ADULT_M, [(1, 0.62, 0.55, 0), (4, 0.56, 0.70, 0.3),
                                       (7, 0.52, 0.78, 0.8), (13.9, 0.52, 0.78, 0.8)])],
              expect=[{"type": "person_in_water"}]),
        Scene("person_submerged", 18, "An adult wades into the water, then sinks out of sight.",
              [Actor("bus1", ADULT_M, [(0.5, 0.62, 0.55, 0), (4, 0.55, 0.76, 0.7),
                                       (7, 0.54, 0.78, 0.9), (10, 0.54, 0.79, 2.2)])],
              expect=[{"type": "person_in_water"}, {"type": "person_submerged"}]),
        Scene("wader", 12, "A man (from zidane.jpg) stands chest deep in the water.",
              [Actor("zidane1", ADULT_M, [(0, 0.30, 0.80, 0.9), (11.9, 0.36, 0.80, 0.9)])],
              expect=[{"type": "person_in_water"}]),
        Scene("two_children", 18, "Two children come onto the bank at different times.",
              [Actor("bus0", CHILD_M, [(1, -0.04, 0.33, 0), (5, 0.30, 0.56, 0), (8, 0.30, 0.56, 0),
                                       (10.5, -0.08, 0.42, 0)]),
               Actor("bus1", CHILD_M, [(9, 1.04, 0.36, 0), (13, 0.65, 0.57, 0),
                                       (17.9, 0.64, 0.57, 0)], flip=True)],
              expect=[{"type": "child_near_water"}, {"type": "child_near_water"}]),
        Scene("child_with_adult", 14, "A child and an adult walk onto the bank together.",
              [Actor("bus0", CHILD_M, [(1, -0.04, 0.42, 0), (6, 0.36, 0.57, 0),
                                       (13.9, 0.38, 0.57, 0)]),
               Actor("bus1", ADULT_M, [(1, -0.14, 0.44, 0), (6, 0.24, 0.59, 0),
                                       (13.9, 0.25, 0.59, 0)])],
              expect=[{"type": "child_near_water", "supervised": True}]),
        Scene("children_side_by_side", 14, "Two children walk along the bank side by side; "
              "the nearer one overtakes and hides the other for about a second.",
              [Actor("bus0", CHILD_M, [(1, -0.04, 0.58, 0), (9, 0.62, 0.58, 0),
                                       (13.9, 0.64, 0.58, 0)]),
               Actor("bus1", CHILD_M, [(1, 0.10, 0.52, 0), (9, 0.46, 0.52, 0),
                                       (13.9, 0.47, 0.52, 0)], flip=True)],
              expect=[{"type": "child_near_water"}, {"type": "child_near_water"}]),
        Scene("child_adult_crossing", 14, "A child and an adult walk along the bank in opposite "
              "directions; the adult passes in front of the child.",
              [Actor("bus0", CHILD_M, [(1, 0.10, 0.54, 0), (10, 0.80, 0.54, 0),
                                       (13.9, 0.82, 0.54, 0)]),
               Actor("bus1", ADULT_M, [(1, 0.92, 0.60, 0), (10, 0.15, 0.60, 0),
                                       (13.9, 0.13, 0.60, 0)], flip=True)],
              expect=[{"type": "child_near_water"}, {"type": "person_near_water"}]),
        Scene("empty_static", 10, "Nobody; only sensor noise and ripples.", []),
        Scene("child_to_bank_dusk", 14, "child_to_bank at 55 % brightness.",
              [Actor("bus0", CHILD_M, child_walk)], gain=lambda t: 0.55,
              expect=[{"type": "child_near_water"}]),
        Scene("child_to_bank_bright", 14, "child_to_bank at 135 % brightness.",
              [Actor("bus0", CHILD_M, child_walk)], gain=lambda t: 1.35,
              expect=[{"type": "child_near_water"}]),
    ]


def kit_scenes() -> list[Scene]:
    """Equipment and camera scenes (issue 4); their configs use short thresholds."""
    return [
        Scene("lifebuoy_removed", 16, "An adult takes the lifebuoy at t=5 s; it stays gone.",
              [Actor("bus1", ADULT_M, [(0.5, 0.55, 0.62, 0), (4, 0.13, 0.63, 0), (5, 0.13, 0.63, 0),
                                       (7.5, -0.15, 0.60, 0)])],
              lifebuoy=lambda t: t < 5.0, equipment_fast=True,
              expect=[{"type": "equipment_missing", "item": "lifebuoy"}]),
        Scene("lifebuoy_brief", 14, "The lifebuoy is gone for 3 s (t=4..7), then back.", [],
              lifebuoy=lambda t: not 4.0 <= t < 7.0, equipment_fast=True),
        Scene("lifebuoy_occluded", 20, "An adult stands in front of the lifebuoy for 15 s.",
              [Actor("bus1", ADULT_M, [(0.5, 0.50, 0.62, 0), (3, 0.11, 0.64, 0),
                                       (18, 0.11, 0.64, 0), (19.9, 0.40, 0.64, 0)])],
              equipment_fast=True, expect=[{"type": "person_near_water"}]),
        Scene("brightness_ramp", 20, "Daylight 100 % -> 60 % -> 140 % -> 100 % (cloud, sun).", [],
              gain=_ramp([(0, 1.0), (2, 1.0), (8, 0.6), (16, 1.4), (20, 1.0)]),
              equipment_fast=True),
        Scene("lens_covered", 18, "Something covers the lens from t=5 to t=13 s.", [],
              covered=lambda t: 5.0 <= t < 13.0, equipment_fast=True,
              expect=[{"type": "camera_fault", "reason": "covered"}, {"type": "camera_ok"}]),
        Scene("camera_nudged", 14, "The camera is knocked at t=4 s: view shifted and rotated.", [],
              shift=lambda t: (0.06, 0.04, 3.0) if t >= 4.0 else (0.0, 0.0, 0.0),
              equipment_fast=True, expect=[{"type": "camera_fault", "reason": "view_moved"}]),
        Scene("night", 10, "It gets dark at t=2..4 s (8 % light).", [],
              gain=_ramp([(0, 1.0), (2, 1.0), (4, 0.08), (10, 0.08)]), equipment_fast=True,
              expect=[{"type": "camera_fault", "reason": "too_dark"}]),
    ]


LIGHT = {"day": (1.0, 0.0, "daylight"), "dusk": (0.55, 0.0, "dusk (55 % light)"),
         "overcast": (0.8, 0.3, "overcast (80 % light, flat)"),
         "bright": (1.3, 0.0, "bright sun (130 %)")}   # gain, haze, wording


def _on(pond: str, light: str, name: str, about: str, actors: list[Actor],
        expect: str) -> Scene:
    """A 10 s clip on a pond in a light; the name gets the pond and any non-default light."""
    g, haze, says = LIGHT[light]
    return Scene(name, 10, f"{about} ({pond}, {says}).", actors, gain=_const(g), haze=haze,
                 pond=pond, expect=[{"type": expect}])


def _child_to_bank(pond: str, light: str, name: str) -> Scene:
    """A child walks from the far side onto the bank and stays ~5 s."""
    p = PONDS[pond]
    bank, far = p.field_end + 0.55 * (p.water_y - p.field_end), p.field_end - 0.06
    return _on(pond, light, name, "A child walks onto the bank and stays",
               [Actor("bus0", CHILD_M, [(0.6, -0.04, far, 0), (4.6, 0.42, bank, 0),
                                        (9.9, 0.45, bank, 0)])], "child_near_water")


def _adult_on_bank(pond: str, light: str, name: str) -> Scene:
    """An adult walks in along the bank and stays."""
    p = PONDS[pond]
    bank = p.field_end + 0.55 * (p.water_y - p.field_end)
    return _on(pond, light, name, "An adult walks along the bank and stays",
               [Actor("bus1", ADULT_M, [(0.6, 1.04, bank - 0.01, 0), (4.0, 0.60, bank, 0),
                                        (9.9, 0.58, bank, 0)], flip=True)], "person_near_water")


def _into_water(pond: str, light: str, name: str) -> Scene:
    """An adult walks from the bank into the water, waist deep."""
    p = PONDS[pond]
    bank, wy = p.field_end + 0.55 * (p.water_y - p.field_end), p.water_y
    return _on(pond, light, name, "An adult walks from the bank into the water, waist deep",
               [Actor("bus0", ADULT_M, [(0.6, 0.62, bank, 0), (3.5, 0.56, wy + 0.04, 0.3),
                                        (6, 0.52, wy + 0.10, 0.8), (9.9, 0.52, wy + 0.10, 0.8)])],
               "person_in_water")


def pond_scenes() -> list[Scene]:
    """Short clips on the other backgrounds, in daylight, overcast, bright sun and dusk."""
    return [
        _child_to_bank("shore", "day", "child_to_bank_shore"),
        _child_to_bank("shore", "dusk", "child_to_bank_shore_dusk"),
        _adult_on_bank("shore", "overcast", "adult_on_bank_shore"),
        _into_water("shore", "day", "person_into_water_shore"),
        _child_to_bank("quay", "overcast", "child_to_bank_quay"),
        _child_to_bank("quay", "bright", "child_to_bank_quay_bright"),
        _adult_on_bank("quay", "dusk", "adult_on_bank_quay"),
        _into_water("quay", "day", "person_into_water_quay"),
    ]


def scenes() -> list[Scene]:
    """Every scene make_scenes.py can make."""
    return meadow_scenes() + kit_scenes() + pond_scenes()
