"""Overlap tests between placed objects, on plain floats (numpy's per-call overhead dominates on
4-gons): separating axes for polygons, closest points for circles, bounding boxes first."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datagen.scenes.phyre.objects import Obj, Point


OVERLAP_TOLERANCE = 1e-3  # metres: shapes may touch (a bar on the floor) but not overlap


Box = tuple[float, float, float, float]  # left, bottom, right, top


def _box_of(points: list[Point]) -> Box:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def boxes_apart(a: Box, b: Box) -> bool:
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


def pair_depths(a: Geometry, b: Geometry) -> Iterator[float]:
    """Overlap depths of the pairs of pieces of a and b whose bounding boxes meet (the other
    pairs are apart), lazily: a caller that only asks "any deeper than t?" stops early."""
    for ca, box_a in a.circles:
        for cb, box_b in b.circles:
            if not boxes_apart(box_a, box_b):
                yield ca[2] + cb[2] - math.hypot(ca[0] - cb[0], ca[1] - cb[1])
        for pb, box_b in b.polygons:
            if not boxes_apart(box_a, box_b):
                yield _circle_poly(ca, pb)
    for pa, box_a in a.polygons:
        for cb, box_b in b.circles:
            if not boxes_apart(box_a, box_b):
                yield _circle_poly(cb, pa)
        for pb, box_b in b.polygons:
            if not boxes_apart(box_a, box_b):
                yield _poly_poly(pa, pb)


def penetration(a: Obj, b: Obj) -> float:
    """How deep two objects overlap (metres; <= 0 when apart, -inf when no two pieces' bounding
    boxes meet): the largest depth over their pairs of convex pieces, each the minimum
    translation that separates the pair."""
    return max(pair_depths(a.geometry(), b.geometry()), default=-math.inf)


def outside(obj: Obj, w: float) -> float:
    """How far the object sticks out of the scene [0, w]^2 (metres; <= 0 when inside)."""
    x0, y0, x1, y1 = obj.geometry().box
    return max(-x0, -y0, x1 - w, y1 - w)
