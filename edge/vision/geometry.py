"""Frame geometry: foot points, zone membership and stature from the calibration."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from edge.config import NodeConfig, Stature

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
Pt = tuple[float, float]

WATER = "water"
BANK = "bank"
BORDER_MARGIN = 0.01  # a box edge this close to the frame edge counts as cut by it
EDGE_INSET = 1e-6     # a foot on the frame's edge is tested this far inside it


def foot_point(box: Box) -> Pt:
    """The bottom centre of a normalised box (x1, y1, x2, y2)."""
    x1, _, x2, y2 = box
    return ((x1 + x2) / 2.0, y2)


def point_in_polygon(pt: Pt, poly: Sequence[Sequence[float]]) -> bool:
    """True when pt lies inside poly (even-odd rule; points on an edge may go either way)."""
    x, y = pt
    inside = False
    n = len(poly)
    if n < 3:
        return False
    j = n - 1
    for i in range(n):
        xi, yi = poly[i][0], poly[i][1]
        xj, yj = poly[j][0], poly[j][1]
        if (yi > y) != (yj > y):
            x_cross = (xj - xi) * (y - yi) / (yj - yi) + xi
            if x < x_cross:
                inside = not inside
        j = i
    return inside


def inside_frame(pt: Pt) -> Pt:
    """pt pulled just inside the frame: feet cut by an edge lie at 0.0 or 1.0, exactly on the
    border of a zone drawn to that edge, where the even-odd test may go either way."""
    x, y = pt
    return (min(max(x, EDGE_INSET), 1.0 - EDGE_INSET), min(max(y, EDGE_INSET), 1.0 - EDGE_INSET))


def zone_of(pt: Pt, cfg: NodeConfig) -> str | None:
    """"water", "bank" or None for a foot point; water wins where the polygons overlap. A foot
    cut by the frame's edge counts as inside the zone that touches that edge."""
    pt = inside_frame(pt)
    if point_in_polygon(pt, cfg.zones.water):
        return WATER
    if cfg.zones.bank and point_in_polygon(pt, cfg.zones.bank):
        return BANK
    return None


def touches_border(box: Box, margin: float = BORDER_MARGIN) -> bool:
    """True when any side of the box lies on (or beyond) the frame edge."""
    x1, y1, x2, y2 = box
    return x1 <= margin or y1 <= margin or x2 >= 1.0 - margin or y2 >= 1.0 - margin


def cut_vertically(box: Box, margin: float = BORDER_MARGIN) -> bool:
    """True when the box touches the top or bottom frame edge (its height is then too short)."""
    return box[1] <= margin or box[3] >= 1.0 - margin


SAME_IOU = 0.5       # boxes overlapping this much show the same person
SAME_INSIDE = 0.7    # ... as do boxes one of which lies this much inside the other


def same_object(a: Box, b: Box) -> bool:
    """True when two boxes in one frame are one person (or one box holds the other)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a = max(1e-12, (a[2] - a[0]) * (a[3] - a[1]))
    area_b = max(1e-12, (b[2] - b[0]) * (b[3] - b[1]))
    return (inter / (area_a + area_b - inter) >= SAME_IOU
            or inter / min(area_a, area_b) >= SAME_INSIDE)


def distance(a: Pt, b: Pt) -> float:
    """Euclidean distance of two normalised points."""
    return float(((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) ** 0.5)


@dataclass(frozen=True)
class StatureModel:
    """Pixels-per-metre (in normalised frame heights) as a linear function of the foot row."""

    slope: float
    intercept: float

    @classmethod
    def fit(cls, stature: Stature) -> StatureModel | None:
        """Least-squares fit from the references; None without a usable calibration."""
        refs = stature.references
        if len(refs) < 2:
            return None
        ys = [r.foot[1] for r in refs]
        ppm = [(r.foot[1] - r.head[1]) / r.height_m for r in refs]
        n = float(len(refs))
        my, mp = sum(ys) / n, sum(ppm) / n
        var = sum((y - my) ** 2 for y in ys)
        if var <= 1e-12:
            return None
        slope = sum((y - my) * (p - mp) for y, p in zip(ys, ppm, strict=True)) / var
        return cls(slope=slope, intercept=mp - slope * my)

    def ppm_at(self, foot_y: float) -> float:
        """Normalised frame heights per metre of body height at this foot row."""
        return self.slope * foot_y + self.intercept

    def height_px(self, foot_y: float, height_m: float) -> float:
        """Normalised box height of a person of height_m standing at foot_y."""
        return self.ppm_at(foot_y) * height_m

    def stature_m(self, box: Box) -> float | None:
        """Estimated body height in metres for a box, None where the fit does not reach."""
        ppm = self.ppm_at(box[3])
        if ppm <= 1e-4:
            return None
        return (box[3] - box[1]) / ppm


def stature_model(cfg: NodeConfig) -> StatureModel | None:
    """The node's calibration, or None when it has none (every person is a possible child)."""
    model = StatureModel.fit(cfg.stature)
    if model is None and cfg.stature.references:
        log.warning("stature references give no usable fit; treating everyone as a possible child")
    return model
