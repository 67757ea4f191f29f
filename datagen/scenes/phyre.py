"""PHYRE-like combinatorial scenes: a red ball plus the four object types of a template, falling.

No PHYRE dependency: the objects, materials and placement rules of PHYRE (and of the authors'
`component_utils.py`) are rebuilt on pymunk. Everything is in metres, y up, the scene a square
of `world_size` (85.33 m: the authors' 512-pixel PHYRE scene at PHYRE's 6 pixels per metre), so
gravity 9.8 m/s^2 gives the same motion as theirs. Placement ranges are fractions of the scene.

Materials (PHYRE's Box2D fixtures): density 0.25, friction 0.5, restitution 0.2, angular
damping 0.01, no linear damping. Box2D combines two fixtures' friction as sqrt(f1 f2) and
restitution as max(e1, e2); pymunk multiplies the two shapes' values. Every shape here has the
same material, so giving each shape sqrt(0.5) and sqrt(0.2) makes pymunk's products exactly
PHYRE's 0.5 and 0.2 for every contact, walls included. pymunk has no per-body angular damping:
it is applied once per frame as the factor Box2D's per-step damping compounds to.

Time: 60 Hz steps (PHYRE's), a frame every `substeps` = 20 steps (the authors' stride): 3 frames
per second, 32 frames = 10.3 s, enough for every object to fall the full scene height (3.8 s from
the highest start) and settle. Frame 0 is the initial state: every object at rest.

Placement (`options.placement`, see docs/datagen_phyre.md):
- `project` (default): objects are placed one type at a time (static types first, then template
  order), each redrawn (up to `MAX_TRIES` times) until it neither overlaps anything already
  placed (static pieces may overlap each other: they never move) nor sticks out of the scene; a
  layout that cannot be completed is redrawn from scratch (up to `MAX_LAYOUTS` times), then
  `PlacementError` names the template. The red ball (radius `USER_BALL_RADIUS`) is dropped above
  or below a random object.
- `paper`: the authors' rules. Every object is drawn once from its ranges: objects may start
  overlapping each other or the walls, and the simulation pushes them apart. Only the red ball is
  checked (inside the scene, overlapping nothing), placed by the authors' heuristic: radius from
  the layout's balls (0.016-0.125 of the scene), near a random object, possibly beside it or
  inside a jar.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymunk._chipmunk import lib as cp

from datagen.config import DatagenConfigError
from datagen.render_shapes import Body, render_video
from datagen.sampling import SceneSpec
from datagen.scenes import States
from datagen.scenes.phyre_templates import (
    NUM_TEMPLATES,
    OUT_OF_TEMPLATE,
    resolve_templates,
    template_objects,
)
from phyworld.cli import UserError

# ----------------------------------------------------------------------------------------------
# World, materials, colours
# ----------------------------------------------------------------------------------------------

RANGES = ()  # no parameter comes from the config's `ranges`: templates place the objects
CONDITION_FRAMES = 0  # no in-view promise (the generator checks none)
# Scene protocol (datagen.scenes.Scene): templates, not ranges, so no feasibility to filter; the
# Chipmunk driver below, not datagen.physics, steps the world.
feasible = world = None
PIXELS_PER_METRE = 6.0  # PHYRE's Box2D scale
WORLD_SIZE = 512 / PIXELS_PER_METRE  # the authors' 512-pixel scene, in metres
GRAVITY = 9.8
DENSITY = 0.25
FRICTION = 0.5
RESTITUTION = 0.2
ANGULAR_DAMPING = 0.01
SOLVER_ITERATIONS = 15  # PHYRE's Box2D velocity iterations
SLEEP_TIME = 0.5  # seconds at rest before a body sleeps (Box2D's b2_timeToSleep)
SLEEP_SPEED = 0.01  # m/s: slower is at rest (Box2D's b2_linearSleepTolerance)
WALL = 0.1  # wall thickness, fraction of the scene; the walls lie just outside it
THICKNESS = 1 / 50  # PHYRE's bar thickness, fraction of the scene

RED = (0xF3, 0x4F, 0x46)  # the user ball
GRAY = (0xB9, 0xCA, 0xD2)  # every other dynamic object
BLACK = (0, 0, 0)  # static objects
USER_BALL_RADIUS = (0.02, 0.08)  # fraction of the scene (placement=project)
PLACEMENTS = ("project", "paper")
SCENE_PX = 512  # the authors' PHYRE scene in pixels: `paper` placement snaps to its grid

MAX_TRIES = 200  # draws per object type before the layout is restarted
MAX_LAYOUTS = 50  # layouts per sample before giving up
OVERLAP_TOLERANCE = 1e-3  # metres: shapes may touch (a bar on the floor) but not overlap


Point = tuple[float, float]
Box = tuple[float, float, float, float]  # left, bottom, right, top


class PlacementError(UserError, RuntimeError):
    """A template whose objects could not be placed without overlaps."""


# ----------------------------------------------------------------------------------------------
# Objects: convex pieces around the centre of mass
# ----------------------------------------------------------------------------------------------


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


def _box(w: float, h: float) -> np.ndarray:
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
        [_box(length, thickness)],
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
    plate = [(x, y) for x, y in _box(base_width, thickness).tolist()]
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
    piece = _box(2 * width / 3, 2 * thickness / 3).tolist()
    polys = []
    for deg in (-77.5, 77.5):
        c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        polys.append(np.array([(c * x - s * y, s * x + c * y) for x, y in piece]))
    diameter = math.hypot(width, thickness)  # PHYRE's, from the unscaled bar
    return Obj("standing_sticks", True, GRAY, np.zeros((0, 3)), polys, diameter=diameter)


# ----------------------------------------------------------------------------------------------
# Placement (PHYRE's `Body.set`: rotate first, then move the rotated bounding box's sides)
# ----------------------------------------------------------------------------------------------


def _place(
    obj: Obj,
    angle_deg: float = 0.0,
    left: float | None = None,
    right: float | None = None,
    bottom: float | None = None,
    center_x: float | None = None,
    center_y: float | None = None,
) -> Obj:
    obj.angle = math.radians(angle_deg)
    x0, y0, x1, y1 = obj.bounds()
    if left is not None:
        obj.x += left - x0
    if right is not None:
        obj.x += right - x1
    if bottom is not None:
        obj.y += bottom - y0
    if center_x is not None:
        obj.x += center_x - (x0 + x1) / 2
    if center_y is not None:
        obj.y += center_y - (y0 + y1) / 2
    return obj


def _place_bar_then_rotate(obj: Obj, angle_deg: float, bottom: float, **side: float) -> Obj:
    """The authors' chained `.set_center_x/.set_right(..).set_bottom(..).set_angle(..)`: the
    unrotated bar is positioned, then turned about its centre."""
    _place(obj, 0.0, bottom=bottom, **side)
    obj.angle = math.radians(angle_deg)
    return obj


def _dynamic_ball(rng, w: float, kind: str) -> list[Obj]:
    r = rng.uniform(0.06, 0.12) * w / 2
    x, bottom = rng.uniform(0.3, 0.6) * w, rng.uniform(0.4, 0.85) * w
    return [_place(ball(kind, r, True, GRAY), center_x=x, bottom=bottom)]


def _chain(rng, walk_points: int) -> list[tuple[float, float]]:
    """The authors' random walk of ball centres (scene fractions) from (0.4, 0.55).

    Straight runs turning by a fixed angle per step; after 3 steps a run may restart from an
    earlier ball with a new heading. Steps that would end at y >= 0.5 are dropped.
    """
    pts = [(0.4, 0.55)]
    cursor = pts[0]
    angle, turn = rng.uniform() * 2 * math.pi, rng.uniform() * 2 * math.pi / 10
    run, inside = 1, 0
    for _ in range(10_000):
        if inside == walk_points:
            break
        if run >= 3 and rng.uniform() < 0.2:
            cursor = pts[rng.integers(len(pts))]
            run, angle, turn = 1, rng.uniform() * 2 * math.pi, rng.uniform() * 2 * math.pi / 10
            continue
        run += 1
        step = rng.uniform(0.05, 0.2)
        angle += turn
        x, y = cursor[0] + step * math.cos(angle), cursor[1] + step * math.sin(angle)
        if y >= 0.5:
            continue
        cursor = (x, y)
        pts.append(cursor)
        inside += 0.0 < x < 1.0 and 0.0 < y < 1.0
    return [(x, y) for x, y in pts if 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0]


def _static_balls(rng, w: float) -> list[Obj]:
    centres = _chain(rng, int(rng.integers(2, 7)))
    return [
        _place(ball("static_balls", 0.02 * w, False, BLACK), center_x=x * w, center_y=y * w)
        for x, y in centres
    ]


def _dynamic_bar(rng, w: float) -> list[Obj]:
    scale, x, y = rng.uniform(0.15, 0.5), rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.8)
    obj = bar("dynamic_bar", scale * w, THICKNESS * w, True)
    return [_place_bar_then_rotate(obj, rng.uniform(-90, 90), y * w, center_x=x * w)]


def _standing_bars(rng, w: float) -> list[Obj]:
    """1-4 vertical bars on the floor, 0.2 + 0.05 i of the scene tall, 0.15 apart."""
    offset, step = rng.uniform(0.45, 0.6), 0.15
    if rng.uniform() < 0.5:  # mirrored: growing to the left
        offset, step = 1.0 - offset, -step
    n = int(rng.integers(1, 5))
    bars = []
    for i, idx in enumerate(range(-n // 2, -n // 2 + n)):
        obj = bar("standing_bars", (0.2 + 0.05 * i) * w, THICKNESS * w, True)
        bars.append(_place(obj, 90.0, bottom=0.0, left=(offset + step * idx) * w))
    return bars


def _static_bar(rng, w: float) -> list[Obj]:
    scale, y, angle = rng.uniform(0.2, 0.5), rng.uniform(0.1, 0.5), rng.uniform(-60, 60)
    right = rng.uniform(0.3, 0.4)
    obj = bar("static_bar", scale * w, THICKNESS * w, False)
    return [_place_bar_then_rotate(obj, angle, y * w, right=right * w)]


def _dynamic_jar(rng, w: float) -> list[Obj]:
    scale, x, y = rng.uniform(0.08, 0.3), rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.8)
    angle = rng.uniform(-45, 45)
    obj = jar(scale * w, w)
    if rng.uniform() < 0.7:
        return [_place(obj, angle, bottom=y * w, center_x=x * w)]
    return [_place(obj, 0.0, bottom=0.0, center_x=x * w)]  # upright on the floor


def _standing_sticks(rng, w: float) -> list[Obj]:
    scale, x, y = rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.5)
    angle = rng.uniform(-90, 90)
    obj = sticks(scale * w, w)
    if rng.uniform() < 0.3:
        return [_place(obj, 0.0, bottom=0.0, center_x=x * w)]  # standing on the floor
    return [_place(obj, angle, bottom=y * w, center_x=x * w)]


def _phyre_radius(diameter: float, w: float) -> float:
    """PHYRE's ball radius for a diameter (both metres): whole pixels of its 512-pixel scene plus a
    half (`Ball._build`: int(r) + 0.5)."""
    px = w / SCENE_PX
    return (int(diameter / 2 / px) + 0.5) * px


def _dynamic_ball_paper(rng, w: float, kind: str) -> list[Obj]:
    r = _phyre_radius(rng.uniform(0.06, 0.12) * w, w)
    x, bottom = rng.uniform(0.3, 0.6) * w, rng.uniform(0.4, 0.85) * w
    return [_place(ball(kind, r, True, GRAY), center_x=x, bottom=bottom)]


def _chain_paper(rng, walk_points: int) -> list[tuple[float, float]]:
    """The authors' random walk exactly (`gen_chain`): as `_chain`, but a restart appends the
    earlier ball it restarts from again (and counts it), the walk always continues from the last
    ball appended, and a restart from the first ball (y >= 0.5) is dropped, keeping the new
    heading. Returns the distinct ball centres inside the scene, in order."""
    stars = [(0.4, 0.55)]
    angle, turn = rng.uniform() * 2 * math.pi, rng.uniform() * 2 * math.pi / 10
    run, inside = 1, 0
    for _ in range(10_000):
        if inside == walk_points:
            break
        if run >= 3 and rng.uniform() < 0.2:
            x, y = stars[rng.integers(len(stars))]
            run, angle, turn = 1, rng.uniform() * 2 * math.pi, rng.uniform() * 2 * math.pi / 10
        else:
            run += 1
            step = rng.uniform(0.05, 0.2)
            angle += turn
            x, y = stars[-1][0] + step * math.cos(angle), stars[-1][1] + step * math.sin(angle)
        if y >= 0.5:
            continue
        stars.append((x, y))
        inside += 0.0 < x < 1.0 and 0.0 < y < 1.0
    # A repeated star is the same static body twice in PHYRE: drawn and simulated as one.
    return list(dict.fromkeys((x, y) for x, y in stars if 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0))


def _static_balls_paper(rng, w: float) -> list[Obj]:
    centres = _chain_paper(rng, int(rng.integers(2, 7)))
    r = _phyre_radius(0.04 * w, w)
    return [
        _place(ball("static_balls", r, False, BLACK), center_x=x * w, center_y=y * w)
        for x, y in centres
    ]


STATIC_TYPES = ("static_balls", "static_bar")

BUILDERS = {
    "dynamic_ball_1": lambda rng, w: _dynamic_ball(rng, w, "dynamic_ball_1"),
    "dynamic_ball_2": lambda rng, w: _dynamic_ball(rng, w, "dynamic_ball_2"),
    "static_balls": _static_balls,
    "dynamic_bar": _dynamic_bar,
    "standing_bars": _standing_bars,
    "static_bar": _static_bar,
    "dynamic_jar": _dynamic_jar,
    "standing_sticks": _standing_sticks,
}
# `paper` placement: PHYRE's pixel-rounded ball radii and the authors' exact chain walk.
PAPER_BUILDERS = {
    **BUILDERS,
    "dynamic_ball_1": lambda rng, w: _dynamic_ball_paper(rng, w, "dynamic_ball_1"),
    "dynamic_ball_2": lambda rng, w: _dynamic_ball_paper(rng, w, "dynamic_ball_2"),
    "static_balls": _static_balls_paper,
}


# ----------------------------------------------------------------------------------------------
# Overlap tests and layouts (plain floats: numpy's per-call overhead dominates on 4-gons)
# ----------------------------------------------------------------------------------------------


def _box_of(points: list[Point]) -> Box:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _apart(a: Box, b: Box) -> bool:
    return a[0] > b[2] or b[0] > a[2] or a[1] > b[3] or b[1] > a[3]


def _normals(poly: list[Point]) -> list[Point]:
    """Unit outward (for counter-clockwise vertices) normals of the edges."""
    out = []
    for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1]):
        ex, ey = x1 - x0, y1 - y0
        norm = math.hypot(ex, ey)
        out.append((ey / norm, -ex / norm))
    return out


class Geometry:
    """An object's convex pieces in world coordinates: circles (x, y, r) and polygons (vertices,
    edge normals), each with its bounding box, and the box around all of them."""

    __slots__ = ("box", "circles", "polygons", "pose")

    def __init__(self, obj: Obj) -> None:
        self.pose = obj.x, obj.y, obj.angle
        c, s, x, y = math.cos(obj.angle), math.sin(obj.angle), obj.x, obj.y
        self.circles = []
        for cx, cy, r in obj.circles.tolist():
            u, v = x + c * cx - s * cy, y + s * cx + c * cy
            self.circles.append(((u, v, r), (u - r, v - r, u + r, v + r)))
        self.polygons = []
        for p in obj.polygons:
            pts = [(x + c * px - s * py, y + s * px + c * py) for px, py in p.tolist()]
            self.polygons.append(((pts, _normals(pts)), _box_of(pts)))
        boxes = [b for _, b in self.circles + self.polygons]
        self.box = (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )


def _span(points: list[Point], nx: float, ny: float) -> tuple[float, float]:
    dots = [x * nx + y * ny for x, y in points]
    return min(dots), max(dots)


def _poly_poly(p, q) -> float:
    """Separating-axis depth of two convex polygons: the smallest overlap of their projections
    on the edge normals of both (<= 0: apart)."""
    (pp, pn), (qp, qn) = p, q
    depth = math.inf
    for nx, ny in pn + qn:
        a_lo, a_hi = _span(pp, nx, ny)
        b_lo, b_hi = _span(qp, nx, ny)
        depth = min(depth, a_hi - b_lo, b_hi - a_lo)
    return depth


def _circle_poly(circle, poly) -> float:
    """Separating-axis depth of a circle and a convex polygon: the polygon's normals plus the
    axis from the circle's centre to the nearest vertex."""
    (cx, cy, r), (pts, normals) = circle, poly
    vx, vy = min(pts, key=lambda v: (v[0] - cx) ** 2 + (v[1] - cy) ** 2)
    axes = normals
    if vx != cx or vy != cy:
        d = math.hypot(vx - cx, vy - cy)
        axes = [*normals, ((vx - cx) / d, (vy - cy) / d)]
    depth = math.inf
    for nx, ny in axes:
        lo, hi = _span(pts, nx, ny)
        centre = cx * nx + cy * ny
        depth = min(depth, hi - (centre - r), (centre + r) - lo)
    return depth


def _pair_depths(a: Geometry, b: Geometry) -> Iterator[float]:
    """Overlap depths of the pairs of pieces of a and b whose bounding boxes meet (the other
    pairs are apart), lazily: a caller that only asks "any deeper than t?" stops early."""
    for ca, box_a in a.circles:
        for cb, box_b in b.circles:
            if not _apart(box_a, box_b):
                yield ca[2] + cb[2] - math.hypot(ca[0] - cb[0], ca[1] - cb[1])
        for pb, box_b in b.polygons:
            if not _apart(box_a, box_b):
                yield _circle_poly(ca, pb)
    for pa, box_a in a.polygons:
        for cb, box_b in b.circles:
            if not _apart(box_a, box_b):
                yield _circle_poly(cb, pa)
        for pb, box_b in b.polygons:
            if not _apart(box_a, box_b):
                yield _poly_poly(pa, pb)


def penetration(a: Obj, b: Obj) -> float:
    """How deep two objects overlap (metres; <= 0 when apart, -inf when no two pieces' bounding
    boxes meet): the largest depth over their pairs of convex pieces, each the minimum
    translation that separates the pair."""
    return max(_pair_depths(a.geometry(), b.geometry()), default=-math.inf)


def outside(obj: Obj, w: float) -> float:
    """How far the object sticks out of the scene [0, w]^2 (metres; <= 0 when inside)."""
    x0, y0, x1, y1 = obj.geometry().box
    return max(-x0, -y0, x1 - w, y1 - w)


class _Occupancy:
    """The objects placed so far, to test a candidate for overlaps and for leaving the scene."""

    def __init__(self, w: float) -> None:
        self.w = w
        self.placed: list[Obj] = []

    def fits(self, objs: list[Obj]) -> bool:
        """No object out of the scene, none overlapping a placed one (static pairs excepted)."""
        tol, w = OVERLAP_TOLERANCE, self.w
        for obj in objs:
            geo = obj.geometry()
            x0, y0, x1, y1 = geo.box
            if max(-x0, -y0, x1 - w, y1 - w) > tol:
                return False
            for other in self.placed:
                other_geo = other.geometry()
                if not (obj.dynamic or other.dynamic) or _apart(geo.box, other_geo.box):
                    continue  # static pairs never move; disjoint boxes cannot overlap
                if any(d > tol for d in _pair_depths(geo, other_geo)):
                    return False
        return True

    def add(self, objs: list[Obj]) -> None:
        self.placed += objs


def _user_ball(rng, occ: _Occupancy, placed: list[Obj], w: float) -> Obj | None:
    """The red ball, dropped near a random object: above it or below it, as the authors' heuristic
    chose actions, at a random horizontal offset within 0.8 of the two objects' reach."""
    bounds = [obj.bounds() for obj in placed]
    for _ in range(MAX_TRIES):
        r = rng.uniform(*USER_BALL_RADIUS) * w
        x0, y0, x1, y1 = bounds[rng.integers(len(placed))]
        reach = max(x1 - x0, y1 - y0) / 2 + r
        x = (x0 + x1) / 2 + rng.uniform(-0.8, 0.8) * reach
        lo, hi = (y1 + r, w - r) if rng.uniform() < 0.5 else (r, y0 - r)
        if hi <= lo:
            continue
        obj = ball("user_ball", r, True, RED)
        obj.x, obj.y = x, rng.uniform(lo, hi)
        if occ.fits([obj]):
            return obj
    return None


# The authors' red-ball heuristic (`sample_and_simulate` in their data_generator_v2.py), in
# fractions of the scene. Their radius variable r is PHYRE's ball action radius / 5.
PAPER_RADIUS = (0.02, 0.2)  # bounds on r (0.1 and 1.0 of PHYRE's action range)
PAPER_EPS = 0.05  # their gap to the top and bottom of the scene
PAPER_HEURISTIC_TRIES = 100  # their max_loop_per_action; then random actions


def _action_ball(x: float, y: float, a: float, w: float) -> Obj | None:
    """PHYRE's ball action (x, y, radius, each in [0, 1]) as the red ball, or None where PHYRE
    calls it invalid (outside [0, 1] or the ball not inside the scene): `BallScaler` maps it to
    its 512-pixel scene, centre (511 x, 511 y) and radius 2 + 62 a pixels, then snaps the
    radius to whole pixels (round) and the centre down to whole pixels (int)."""
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0 and 0.0 <= a <= 1.0):
        return None
    u, v, r = x * (SCENE_PX - 1), y * (SCENE_PX - 1), 2 + a * (SCENE_PX // 8 - 2)
    if not (r <= u <= SCENE_PX - r and r <= v <= SCENE_PX - r):
        return None
    px = w / SCENE_PX
    obj = ball("user_ball", round(r) * px, True, RED)
    obj.x, obj.y = int(u) * px, int(v) * px
    return obj


def paper_radius_range(placed: list[Obj], w: float) -> tuple[float, float]:
    """The authors' bounds on r for a layout: from half the smallest to four times the largest
    ball radius of the layout, within PAPER_RADIUS (all of it when the layout has no ball)."""
    radii = [o.diameter / 2 / w for o in placed if o.shape == "circle"]
    if not radii:
        return PAPER_RADIUS
    lo, hi = PAPER_RADIUS
    return max(min(radii) / 2, lo), min(4 * max(radii), hi)


def _user_ball_paper(rng, occ: _Occupancy, placed: list[Obj], w: float) -> Obj | None:
    """The red ball by the authors' heuristic: pick an object (not a bar within 18 degrees above
    horizontal: PHYRE's angle feature is angle mod 2 pi over 2 pi, < 0.05), r ~ U(radius range),
    a horizontal offset dx ~ U(-0.8, 0.8) (object radius + r) from its centre, and, half the
    time, a height between its centre + 0.9 dx and the top (less the object's radius and 0.05),
    else between the bottom (plus those) and its centre - 0.9 dx: above, below, beside, or
    inside a jar. Kept when it is inside the scene and overlaps nothing; after
    PAPER_HEURISTIC_TRIES misses, uniformly random positions, as the authors fall back to."""
    lo, hi = paper_radius_range(placed, w)
    tau = 2 * math.pi
    targets = [o for o in placed if not (o.shape == "box" and (o.angle % tau) / tau < 0.05)]
    targets = targets or placed
    for _ in range(PAPER_HEURISTIC_TRIES):
        target = targets[rng.integers(len(targets))]
        radius = target.diameter / 2 / w
        mine = rng.uniform(lo, hi)
        dx = rng.uniform(-0.8, 0.8) * (radius + mine)
        cy = target.y / w
        if rng.uniform() < 0.5:
            a, b = cy + 0.9 * dx, 1.0 - radius - PAPER_EPS
        else:
            a, b = radius + PAPER_EPS, cy - 0.9 * dx
        y = a + (b - a) * rng.uniform()  # numpy's uniform(a, b), also when a > b
        obj = _action_ball(target.x / w + dx, y, 5 * mine, w)
        if obj is not None and occ.fits([obj]):
            return obj
    for _ in range(50 * MAX_TRIES):
        obj = _action_ball(rng.uniform(), rng.uniform(), 5 * rng.uniform(lo, hi), w)
        if obj is not None and occ.fits([obj]):
            return obj
    return None


def place_layout(
    template: int, rng: np.random.Generator, w: float, placement: str = "project"
) -> list[Obj]:
    """The template's objects (see the module docstring): `project` placement without overlaps,
    `paper` placement each object drawn once, in template order, as the authors did."""
    kinds = template_objects(template)
    if placement == "paper":
        return [obj for kind in kinds for obj in PAPER_BUILDERS[kind](rng, w)]
    # Static types first: they are the hardest to fit (a chain spans much of the scene) and a
    # dynamic object that collides with them is cheap to redraw.
    order = sorted(kinds, key=lambda kind: kind not in STATIC_TYPES)
    for _ in range(MAX_LAYOUTS):
        occ, placed = _Occupancy(w), []
        for kind in order:
            for _ in range(MAX_TRIES):
                objs = BUILDERS[kind](rng, w)
                if occ.fits(objs):
                    occ.add(objs)
                    placed += objs
                    break
            else:
                break  # this type found no room: start the layout again
        else:
            return placed
    raise PlacementError(
        f"template {template} {kinds}: no overlap-free layout in {MAX_LAYOUTS} attempts of "
        f"{MAX_TRIES} draws per object; the placement ranges in datagen/scenes/phyre.py leave "
        "no room for these objects together"
    )


def place_user_ball(
    layout: list[Obj], rng: np.random.Generator, w: float, placement: str = "project"
) -> Obj | None:
    """The red ball for `layout` (by the `placement` rule), or None when no free spot was found."""
    occ = _Occupancy(w)
    occ.add(layout)
    if placement == "paper":
        return _user_ball_paper(rng, occ, layout, w)
    return _user_ball(rng, occ, layout, w)


# ----------------------------------------------------------------------------------------------
# Simulation: Chipmunk through its C API
# ----------------------------------------------------------------------------------------------

_IDENTITY = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)  # cpTransform a, b, c, d, tx, ty


@contextmanager
def _chipmunk_space(objs: list[Obj], w: float) -> Iterator[tuple[Any, list[Any]]]:
    """The scene as a Chipmunk space (walls, then one body per object): (space, body handles),
    freed on exit.

    Built with Chipmunk's C functions (pymunk's cffi binding), the calls pymunk's `Space`,
    `Body`, `Circle` and `Poly` make, in the order they make them, so the world is the one
    pymunk would build (tested bit for bit): pymunk's Python objects cost ~1 ms per scene to
    build and ~0.5 us per property read, as much as the 620 steps' collision work.
    """
    space = cp.cpSpaceNew()
    bodies: list[Any] = []
    shapes: list[Any] = []

    def add(body, circles, polygons, dynamic: bool) -> None:
        own = [cp.cpCircleShapeNew(body, r, (cx, cy)) for cx, cy, r in circles]
        own += [
            cp.cpPolyShapeNew(body, len(p), [tuple(v) for v in p], _IDENTITY, 0.0) for p in polygons
        ]
        for s in own:
            cp.cpShapeSetFriction(s, friction)
            cp.cpShapeSetElasticity(s, elasticity)
            if dynamic:
                cp.cpShapeSetDensity(s, DENSITY)
        cp.cpSpaceAddBody(space, body)
        for s in own:
            cp.cpSpaceAddShape(space, s)
        shapes.extend(own)

    try:
        cp.cpSpaceSetGravity(space, (0.0, -GRAVITY))
        cp.cpSpaceSetIterations(space, SOLVER_ITERATIONS)
        cp.cpSpaceSetSleepTimeThreshold(space, SLEEP_TIME)
        cp.cpSpaceSetIdleSpeedThreshold(space, SLEEP_SPEED)
        friction, elasticity = math.sqrt(FRICTION), math.sqrt(RESTITUTION)  # see module docstring
        t = WALL * w
        walls = cp.cpBodyNewStatic()
        bodies.append(walls)
        boxes = [((w / 2, -t / 2), (w + 2 * t, t)), ((w / 2, w + t / 2), (w + 2 * t, t)),
                 ((-t / 2, w / 2), (t, w)), ((w + t / 2, w / 2), (t, w))]  # fmt: skip
        add(walls, (), [_box(*size) + c for c, size in boxes], dynamic=False)
        handles = []
        for obj in objs:
            body = cp.cpBodyNew(0.0, 0.0) if obj.dynamic else cp.cpBodyNewStatic()
            bodies.append(body)
            cp.cpBodySetPosition(body, (obj.x, obj.y))
            cp.cpBodySetAngle(body, obj.angle)
            add(body, obj.circles, obj.polygons, obj.dynamic)
            handles.append(body)
        for obj, body in zip(objs, handles):
            if obj.dynamic and not cp.cpBodyGetMass(body) > 0.0:
                raise ValueError(f"{obj.type}: a dynamic body without area (no mass)")
        yield space, handles
    finally:
        cp.cpSpaceFree(space)  # frees the space's own data only: then its shapes and bodies
        for s in shapes:
            cp.cpShapeFree(s)
        for b in bodies:
            cp.cpBodyFree(b)


@dataclass
class Trajectory:
    """Per-frame states of every object (static ones included), plus mass and moment."""

    positions: np.ndarray  # (T, N, 2) centre of mass
    velocities: np.ndarray  # (T, N, 2)
    angles: np.ndarray  # (T, N)
    angular_velocities: np.ndarray  # (T, N)
    mass: np.ndarray  # (N,) inf for static
    moment: np.ndarray  # (N,)


def _state(body) -> tuple[float, float, float, float, float, float]:
    """x, y, angle, vx, vy, angular velocity of a Chipmunk body."""
    p, v = cp.cpBodyGetPosition(body), cp.cpBodyGetVelocity(body)
    return p.x, p.y, cp.cpBodyGetAngle(body), v.x, v.y, cp.cpBodyGetAngularVelocity(body)


def simulate_objects(
    objs: list[Obj], w: float, frames: int, substeps: int, frame_dt: float
) -> Trajectory:
    """Run the scene from rest; frame k is the state after k * substeps steps of frame_dt/substeps.

    Bodies at rest fall asleep (after SLEEP_TIME below SLEEP_SPEED, as in Box2D) and are recorded
    at rest (Box2D zeroes a sleeping body's velocity; Chipmunk keeps the last, unused); once every
    one sleeps nothing can move again, and the remaining frames repeat the last without stepping.
    """
    dt = frame_dt / substeps
    # Box2D's per-step angular damping, compounded over a frame.
    damping = (1.0 / (1.0 + dt * ANGULAR_DAMPING)) ** substeps
    dynamic = np.array([obj.dynamic for obj in objs], dtype=bool)
    with _chipmunk_space(objs, w) as (space, bodies):
        first = [_state(b) for b in bodies]  # static bodies keep it: recorded once
        moving = [b for b, d in zip(bodies, dynamic) if d]
        # Chipmunk's rest threshold: kinetic energy below m * SLEEP_SPEED^2 counts as at rest.
        rest = [cp.cpBodyGetMass(b) * SLEEP_SPEED**2 for b in moving]
        rows = []  # the moving bodies' states, frame after frame from frame 1
        for _ in range(1, frames):
            for _ in range(substeps):
                cp.cpSpaceStep(space, dt)
            awake = False
            for b, rest_energy in zip(moving, rest):
                p = cp.cpBodyGetPosition(b)
                if cp.cpBodyIsSleeping(b):
                    rows.append((p.x, p.y, cp.cpBodyGetAngle(b), 0.0, 0.0, 0.0))
                    continue
                awake = True
                spin = cp.cpBodyGetAngularVelocity(b)
                # Damp moving bodies only: any velocity write restarts Chipmunk's sleep timer, so
                # damping a body at rest (too slow for it to matter) would keep it awake forever.
                if cp.cpBodyKineticEnergy(b) > rest_energy:
                    spin *= damping
                    cp.cpBodySetAngularVelocity(b, spin)
                v = cp.cpBodyGetVelocity(b)
                rows.append((p.x, p.y, cp.cpBodyGetAngle(b), v.x, v.y, spin))
            if not awake:
                break
        mass = np.array([cp.cpBodyGetMass(b) if d else np.inf for b, d in zip(bodies, dynamic)])
        moment = np.array([cp.cpBodyGetMoment(b) if d else np.inf for b, d in zip(bodies, dynamic)])
    out = np.zeros((frames, len(objs), 6))
    out[:, :, :3] = np.array(first).reshape(1, len(objs), 6)[:, :, :3]
    if rows:
        done = len(rows) // len(moving)  # frames simulated after the first
        out[1 : 1 + done, dynamic] = np.array(rows).reshape(done, len(moving), 6)
        out[1 + done :, dynamic] = out[done, dynamic]  # all asleep: nothing moves any more
    return Trajectory(
        positions=out[:, :, 0:2],
        velocities=out[:, :, 3:5],
        angles=out[:, :, 2],
        angular_velocities=out[:, :, 5],
        mass=mass,
        moment=moment,
    )


# ----------------------------------------------------------------------------------------------
# The scene interface of datagen.scenes
# ----------------------------------------------------------------------------------------------


# Every scene option (`options.*` of a phyre config) and its default.
OPTIONS: dict[str, Any] = {
    "templates": "train60",  # train6 | train30 | train60 | out_template | all | ids "0,3,10-19"
    "videos_per_template": 1,  # unless the config sets `count`
    "layouts_per_template": 0,  # L > 0: L shared layouts per template; 0: one per video
    "first_video": 0,  # index of this dataset's first video in each template's sequence
    "placement": "project",  # project | paper (see the module docstring)
    "render_scale": 1,  # 2: draw at twice the resolution, then average each 2 x 2 block
}


def _option(spec: SceneSpec, key: str) -> Any:
    return spec.option(key, OPTIONS[key])


def _int_option(spec: SceneSpec, key: str, lowest: int) -> int:
    value = _option(spec, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise DatagenConfigError(f"options.{key} must be an integer >= {lowest}, got {value!r}")
    return value


def _templates(spec: SceneSpec) -> tuple[int, ...]:
    try:
        return resolve_templates(str(_option(spec, "templates")))
    except ValueError as err:
        raise DatagenConfigError(f"options.templates: {err}") from None


@functools.lru_cache(maxsize=64)
def _starts(num_templates: int, count: int, per: int) -> tuple[int, ...]:
    """Index of each template's first video, and the total at the end: `per` videos each, or
    `count` > 0 spread as evenly as possible (the first count % K templates get one more)."""
    if count > 0:
        sizes = [count // num_templates + (i < count % num_templates) for i in range(num_templates)]
    else:
        sizes = [per] * num_templates
    return (0, *itertools.accumulate(sizes))


def _template_starts(spec: SceneSpec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(templates, starts) of the dataset (see `_starts`)."""
    templates = _templates(spec)
    per = _option(spec, "videos_per_template")
    return templates, _starts(len(templates), spec.count, per)


def validate(spec: SceneSpec) -> None:
    """Known options with sensible values, templates that exist and match the level, a `count`
    that gives every template a video."""
    unknown = sorted(set(spec.options) - set(OPTIONS))
    if unknown:
        raise DatagenConfigError(
            f"unknown phyre option(s) {unknown}; the options are {sorted(OPTIONS)}"
        )
    templates = _templates(spec)
    held_out = set(OUT_OF_TEMPLATE)
    if spec.level == "out_template" and not set(templates) <= held_out:
        raise DatagenConfigError(
            f"level=out_template but options.templates includes training templates "
            f"{sorted(set(templates) - held_out)}; use options.templates=out_template"
        )
    if spec.level != "out_template" and set(templates) & held_out:
        raise DatagenConfigError(
            f"options.templates includes held-out templates {sorted(set(templates) & held_out)} "
            f"(60-{NUM_TEMPLATES - 1}) but level={spec.level}; set level=out_template or use "
            "training templates"
        )
    _int_option(spec, "videos_per_template", 1)
    layouts = _int_option(spec, "layouts_per_template", 0)
    if _int_option(spec, "first_video", 0) and not layouts:
        raise DatagenConfigError(
            "options.first_video selects later videos (held-out red balls) of shared layouts, "
            "but layouts_per_template=0 gives every video its own layout: set "
            "layouts_per_template (as the training set does), or use another seed for new layouts"
        )
    if _option(spec, "render_scale") not in (1, 2):
        raise DatagenConfigError(
            f"options.render_scale must be 1 (draw at `resolution`) or 2 (draw at twice it and "
            f"average 2 x 2 blocks, the authors' 512 -> 256), got {_option(spec, 'render_scale')!r}"
        )
    if _option(spec, "placement") not in PLACEMENTS:
        raise DatagenConfigError(
            f"options.placement must be one of {PLACEMENTS}, got {_option(spec, 'placement')!r}"
        )
    if spec.count < 0 or 0 < spec.count < len(templates):
        raise DatagenConfigError(
            f"count={spec.count} videos cannot cover the {len(templates)} templates of "
            f"options.templates={_option(spec, 'templates')}: set count >= {len(templates)} "
            "(spread over the templates), or count=0 and options.videos_per_template"
        )


def count(spec: SceneSpec) -> int:
    """Number of videos: `count` when the config sets it (spread over the templates), else every
    template of `options.templates` times `videos_per_template`."""
    return _template_starts(spec)[1][-1]


@functools.lru_cache(maxsize=1024)
def _shared_layout(
    seed: int, template: int, layout: int, w: float, placement: str
) -> tuple[Obj, ...]:
    """Layout number `layout` of `template` when a template's videos share a few layouts: a pure
    function of its arguments, so it is kept for the next video that uses it (a worker's videos
    cycle through their template's layouts). Callers must not change the objects."""
    rng = np.random.default_rng([seed, template, layout, 0x5C3E])
    return tuple(place_layout(template, rng, w, placement))


def sample_params(spec: SceneSpec, index: int, rng: np.random.Generator) -> dict:
    """Template, layout and red ball of video `index` (template-major order).

    Video j of a template is number j + `first_video` of that template's sequence. With
    `layouts_per_template` L > 0 it is layout j % L (of L per template, drawn from the dataset
    seed, template and layout number) with red ball ("trial") j // L, drawn from the seed,
    template and j: the authors' scheme (100 PHYRE tasks per template, 1,000 red balls each),
    so an eval set with the training seed and `first_video` past the training videos holds the
    same layouts with red balls never trained on. With L = 0 every video has its own layout and
    red ball, drawn from the video's own `rng`.
    """
    templates, starts = _template_starts(spec)
    t = bisect.bisect_right(starts, index) - 1
    template, j = templates[t], index - starts[t] + _option(spec, "first_video")
    layouts = _option(spec, "layouts_per_template")
    placement = _option(spec, "placement")
    w = spec.world_size
    if layouts:
        layout = list(_shared_layout(spec.seed, template, j % layouts, w, placement))
        trial = np.random.default_rng([spec.seed, template, j, 0xBA11])
        user = place_user_ball(layout, trial, w, placement)
        if user is None:
            raise PlacementError(
                f"template {template} layout {j % layouts}: no room for the red ball"
            )
    else:
        for _ in range(MAX_LAYOUTS):
            layout = place_layout(template, rng, w, placement)
            user = place_user_ball(layout, rng, w, placement)
            if user is not None:
                break
        else:
            raise PlacementError(
                f"template {template}: no room for the red ball in {MAX_LAYOUTS} layouts"
            )
    objs = [*layout, user]
    return {
        "template": template,
        "objects": [{**o.describe(), "x": o.x, "y": o.y, "angle": o.angle} for o in objs],
    }


def objects_from_params(params: dict) -> list[Obj]:
    """Rebuild the bodies of `sample_params`' output."""
    objs = []
    for d in params["objects"]:
        colour = tuple(d["colour"])
        if d["shape"] == "circle":
            obj = ball(d["type"], d["radius"], d["dynamic"], colour)
        elif d["shape"] == "box":
            obj = bar(d["type"], *d["size"], d["dynamic"])
        else:
            pieces = [np.array(p, dtype=np.float64) for p in d["pieces"]]
            obj = Obj(d["type"], d["dynamic"], colour, np.zeros((0, 3)), pieces)
        obj.x, obj.y, obj.angle = d["x"], d["y"], d["angle"]
        objs.append(obj)
    return objs


def simulate(params: dict, spec: SceneSpec) -> States:
    """The video's states: every object (static ones too) at every frame."""
    objs = objects_from_params(params)
    traj = simulate_objects(objs, spec.world_size, spec.frames, spec.substeps, spec.frame_dt)
    return States(
        traj.positions.astype(np.float32),
        traj.velocities.astype(np.float32),
        traj.angles.astype(np.float32),
        [o.describe() for o in objs],
    )


def render_bodies(objects: list[dict]) -> list[Body]:
    """Renderable pieces of `objects` column entries (circle, box or compound)."""
    bodies = []
    for d in objects:
        if d["shape"] == "circle":
            bodies.append(Body(np.array([[0.0, 0.0, d["radius"]]]), (), tuple(d["colour"])))
        elif d["shape"] == "box":
            bodies.append(Body(np.zeros((0, 3)), (_box(*d["size"]),), tuple(d["colour"])))
        else:
            pieces = tuple(np.asarray(p, dtype=np.float64) for p in d["pieces"])
            bodies.append(Body(np.zeros((0, 3)), pieces, tuple(d["colour"])))
    return bodies


def render(
    states: States,
    world_size: float,
    resolution: int,
    out: np.ndarray | None = None,
    spec: SceneSpec | None = None,
) -> np.ndarray:
    """Frames (T, H, W, 3) uint8: hard-edged filled shapes on white, static ones drawn once.

    `out`: a (T, 3, H, W) uint8 buffer to draw into, reused from video to video (see
    `datagen.render_shapes.render_video`); the frames are a view of it. `spec`: the dataset's
    options; with `render_scale` 2 the shapes are drawn at twice `resolution` and each 2 x 2
    block averaged (the authors rendered at 512 pixels and downscaled to 256).
    """
    scale = _option(spec, "render_scale") if spec is not None else 1
    poses = np.concatenate([states.positions, states.angles[..., None]], axis=-1).astype(np.float64)
    dynamic = np.array([d["dynamic"] for d in states.objects])
    bodies = render_bodies(states.objects)
    return render_video(bodies, poses, dynamic, world_size, resolution, out, supersample=scale)
