"""Placement: each object type's builder (PHYRE's `Body.set`: rotate first, then move the
rotated bounding box's sides), the overlap-free `project` layouts and the authors' `paper` rules,
and the red ball (see the package docstring)."""

from __future__ import annotations

import math

import numpy as np

from datagen.scenes.phyre.objects import BLACK, GRAY, RED, THICKNESS, Obj, ball, bar, jar, sticks
from datagen.scenes.phyre.overlap import OVERLAP_TOLERANCE, boxes_apart, pair_depths
from datagen.scenes.phyre_templates import (
    template_objects,
)
from phyworld.cli import UserError

USER_BALL_RADIUS = (0.02, 0.08)  # fraction of the scene (placement=project)


PLACEMENTS = ("project", "paper")


SCENE_PX = 512  # the authors' PHYRE scene in pixels: `paper` placement snaps to its grid


MAX_TRIES = 200  # draws per object type before the layout is restarted


MAX_LAYOUTS = 50  # layouts per sample before giving up


class PlacementError(UserError, RuntimeError):
    """A template whose objects could not be placed without overlaps."""


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
                if not (obj.dynamic or other.dynamic) or boxes_apart(geo.box, other_geo.box):
                    continue  # static pairs never move; disjoint boxes cannot overlap
                if any(d > tol for d in pair_depths(geo, other_geo)):
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
        f"{MAX_TRIES} draws per object; the placement ranges in datagen/scenes/phyre/placement.py leave "
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
