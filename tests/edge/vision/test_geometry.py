"""Zones, foot points, border checks and the stature fit."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from edge.config import NodeConfig, Stature
from edge.vision.geometry import (
    StatureModel,
    foot_point,
    point_in_polygon,
    stature_model,
    touches_border,
    zone_of,
)


def test_foot_point_is_bottom_centre() -> None:
    """The foot is the middle of the box's bottom edge."""
    assert foot_point((0.2, 0.1, 0.4, 0.7)) == pytest.approx((0.3, 0.7))


def test_point_in_polygon_concave() -> None:
    """An L-shaped polygon: the notch is outside."""
    poly = [(0, 0), (1, 0), (1, 0.5), (0.5, 0.5), (0.5, 1), (0, 1)]
    assert point_in_polygon((0.25, 0.75), poly)
    assert not point_in_polygon((0.75, 0.75), poly)
    assert not point_in_polygon((1.5, 0.2), poly)
    assert not point_in_polygon((0.5, 0.5), [(0, 0), (1, 1)])  # degenerate: never inside


def test_zone_of(make_cfg: Callable[..., NodeConfig]) -> None:
    """Water below 0.62, bank 0.40..0.62, field above."""
    cfg = make_cfg()
    assert zone_of((0.5, 0.8), cfg) == "water"
    assert zone_of((0.5, 0.5), cfg) == "bank"
    assert zone_of((0.5, 0.3), cfg) is None


def test_water_wins_where_zones_overlap(make_cfg: Callable[..., NodeConfig]) -> None:
    """Overlapping polygons: the more dangerous zone counts."""
    cfg = make_cfg(zones={"water": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]],
                          "bank": [[0, 0.3], [1, 0.3], [1, 0.8], [0, 0.8]]})
    assert zone_of((0.5, 0.6), cfg) == "water"


def test_touches_border() -> None:
    """Boxes on the frame edge are cut; boxes inside are not."""
    assert touches_border((0.0, 0.3, 0.2, 0.6))
    assert touches_border((0.3, 0.3, 0.5, 1.0))
    assert not touches_border((0.3, 0.3, 0.5, 0.6))


def test_stature_fit_reproduces_references(make_cfg: Callable[..., NodeConfig]) -> None:
    """The fitted model gives the references their own height back."""
    cfg = make_cfg()
    model = stature_model(cfg)
    assert model is not None
    for r in cfg.stature.references:
        box = (r.foot[0] - 0.03, r.head[1], r.foot[0] + 0.03, r.foot[1])
        assert model.stature_m(box) == pytest.approx(r.height_m, rel=1e-6)


def test_stature_between_references(make_cfg: Callable[..., NodeConfig]) -> None:
    """A 1.10 m child between the reference rows measures 1.10 m."""
    model = stature_model(make_cfg())
    assert model is not None
    row = 0.55
    h = model.height_px(row, 1.10)
    assert model.stature_m((0.4, row - h, 0.45, row)) == pytest.approx(1.10, rel=1e-6)


def test_no_calibration_gives_none(make_cfg: Callable[..., NodeConfig]) -> None:
    """Without references there is no model (everyone is a possible child)."""
    assert stature_model(make_cfg(calibrated=False)) is None
    assert StatureModel.fit(Stature()) is None


def test_stature_none_where_fit_goes_negative() -> None:
    """Rows above the horizon of the fit have no stature."""
    model = StatureModel(slope=1.0, intercept=-0.2)
    assert model.stature_m((0.1, 0.0, 0.2, 0.1)) is None


def test_feet_cut_by_the_frame_edge_are_in_the_zone_touching_it(
        make_cfg: Callable[..., NodeConfig]) -> None:
    """A box cut by the bottom or right edge has its foot at 1.0: inside a zone drawn to that
    edge (here: the whole frame is water), never outside every zone."""
    cfg = make_cfg(zones={"water": [[0, 0], [1, 0], [1, 1], [0, 1]]})
    assert zone_of(foot_point((0.40, 0.55, 0.60, 1.0)), cfg) == "water"
    assert zone_of((1.0, 0.5), cfg) == "water"
    assert zone_of((0.0, 0.0), cfg) == "water"
    # a zone that stops short of the edge still does not reach a foot on the edge
    cfg = make_cfg(zones={"water": [[0, 0.5], [1, 0.5], [1, 0.9], [0, 0.9]]})
    assert zone_of((0.5, 1.0), cfg) is None
