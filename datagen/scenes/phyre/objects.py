"""PHYRE-like objects: rigid bodies as convex pieces around their centre of mass, and the
scene's scale and colours (see the package docstring for the materials and placement)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from datagen.scenes.phyre.overlap import Geometry

PIXELS_PER_METRE = 6.0  # PHYRE's Box2D scale


WORLD_SIZE = 512 / PIXELS_PER_METRE  # the authors' 512-pixel scene, in metres


THICKNESS = 1 / 50  # PHYRE's bar thickness, fraction of the scene


RED = (0xF3, 0x4F, 0x46)  # the user ball


GRAY = (0xB9, 0xCA, 0xD2)  # every other dynamic object


BLACK = (0, 0, 0)  # static objects


Point = tuple[float, float]


@dataclass
class Obj:
    """One rigid body: convex pieces in its own frame (origin = centre of mass) and a pose."""

    type: str
    dynamic: bool
    colour: tuple[int, int, int]
    circles: np.ndarray  # (k, 3): local centre x, y, radius
    polygons: list[np.ndarray] = field(default_factory=list)  # each (n, 2), counter-clockwise
    shape: str = "compound"  # circle | box | compound (the `objects` column's vocabulary)
    size: tuple[float, float] = (0.0, 0.0)  # box: length, thickness
    diameter: float = 0.0  # PHYRE's featurized diameter (metres): read by `paper` placement
    x: float = 0.0
    y: float = 0.0
    angle: float = 0.0
    _geometry: Geometry | None = field(default=None, init=False, repr=False, compare=False)

    def geometry(self) -> Geometry:
        """The pieces in world coordinates at the current pose (kept until the pose changes)."""
        geo = self._geometry
        if geo is None or geo.pose != (self.x, self.y, self.angle):
            geo = self._geometry = Geometry(self)
        return geo

    def bounds(self) -> tuple[float, float, float, float]:
        """left, bottom, right, top of the axis-aligned bounding box."""
        return self.geometry().box

    def describe(self) -> dict:
        """The `objects` column entry (geometry in the body frame, world units)."""
        d = {
            "type": self.type,
            "shape": self.shape,
            "colour": list(self.colour),
            "dynamic": self.dynamic,
        }
        if self.shape == "circle":
            d["radius"] = float(self.circles[0, 2])
        elif self.shape == "box":
            d["size"] = [float(v) for v in self.size]
        else:
            d["pieces"] = [p.round(6).tolist() for p in self.polygons]
        return d


def rectangle(w: float, h: float) -> np.ndarray:
    return np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])


def _area_centroid(poly: list[Point]) -> tuple[float, float, float]:
    """Area and centroid x, y of a counter-clockwise polygon (the shoelace formulas)."""
    area = cx = cy = 0.0
    for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1]):
        cross = x0 * y1 - x1 * y0
        area += cross
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    return area / 2, cx / (3 * area), cy / (3 * area)


def _recentred(polygons: list[list[Point]]) -> list[np.ndarray]:
    """Shift pieces so the origin is the centre of mass (pieces' masses add, as in Box2D)."""
    parts = [_area_centroid(p) for p in polygons]
    total = sum(a for a, _, _ in parts)
    mx, my = sum(a * x for a, x, _ in parts) / total, sum(a * y for a, _, y in parts) / total
    return [np.array([(x - mx, y - my) for x, y in p]) for p in polygons]


def ball(kind: str, radius: float, dynamic: bool, colour) -> Obj:
    """A ball of `radius` (metres) at the origin."""
    return Obj(
        kind, dynamic, colour, np.array([[0.0, 0.0, radius]]), shape="circle", diameter=2 * radius
    )


def bar(kind: str, length: float, thickness: float, dynamic: bool) -> Obj:
    """A horizontal bar (a box) centred at the origin; gray if dynamic, black if static."""
    return Obj(
        kind,
        dynamic,
        GRAY if dynamic else BLACK,
        np.zeros((0, 3)),
        [rectangle(length, thickness)],
        shape="box",
        size=(length, thickness),
        diameter=math.hypot(length, thickness),
    )


def jar(height: float, scene: float) -> Obj:
    """PHYRE's jar: a base plate and two slanted walls, wider at the top (sizes in metres)."""
    width = height / 1.2
    base_width = 0.8 * width
    # PHYRE: thickness grows with log(height in its 512-pixel units), W/50 at scale 0.3.
    px = 512 / scene
    thickness = math.log(height * px) / math.log(0.3 * 512) * 512 / 50 / px
    base = (width - base_width) / 2
    hyp = math.hypot(height, base)
    cos, sin = base / hyp, height / hyp
    t2 = thickness / 2
    plate = [(x, y) for x, y in rectangle(base_width, thickness).tolist()]
    left = [
        (-width / 2, height - t2),
        (-base_width / 2, -t2),
        (-base_width / 2 + thickness * sin, thickness * cos - t2),
        (-width / 2 + thickness / sin, height - t2),
    ]
    right = [(-x, y) for x, y in reversed(left)]  # the mirror image, counter-clockwise
    pieces = _recentred([plate, left, right])
    # PHYRE's `Jar._diameter`: the base-to-rim diagonal.
    diameter = math.hypot((width + base_width) / 2, height)
    return Obj("dynamic_jar", True, GRAY, np.zeros((0, 3)), pieces, diameter=diameter)


def sticks(width: float, scene: float) -> Obj:
    """PHYRE's standing sticks: two bars crossed at their centres, tilted +-77.5 degrees."""
    thickness = THICKNESS * scene
    piece = rectangle(2 * width / 3, 2 * thickness / 3).tolist()
    polys = []
    for deg in (-77.5, 77.5):
        c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        polys.append(np.array([(c * x - s * y, s * x + c * y) for x, y in piece]))
    diameter = math.hypot(width, thickness)  # PHYRE's, from the unscaled bar
    return Obj("standing_sticks", True, GRAY, np.zeros((0, 3)), polys, diameter=diameter)
