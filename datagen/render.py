"""States -> frames: the fast renderer, in the project's pixel convention (`phyworld.data.pixels`).

Pixel convention (ARCHITECTURE.md): the image is `resolution` x `resolution` pixels over a square
world `world_size` wide; world y points up, image rows go down. Pixel (i, j) (column i, row j)
covers world x in [i*s, (i+1)*s), y in [world - (j+1)*s, world - j*s) with s = world_size /
resolution. Continuous pixel coordinates (u, v) put the *edge* of pixel i at u = i and its
centre at u = i + 0.5. Eval converts with `pixel_to_world` / `index_to_world`.

Two renderings (`style`):
- `aa` (default): anti-aliased, in the convention above. A disc's (or ring's) alpha in a pixel is
  the exact area of the disc inside the pixel (`_paint_discs`: the circle's area integral,
  evaluated per row at the pixel edges), so an alpha-weighted parser recovers the centre to
  ~1e-3 px; boxes use alpha = clip(0.5 - signed distance in pixels, 0, 1).
- `paper`: the authors' kinematic generator, for comparisons with the paper: their soft edge,
  alpha = clip((r^2 - d^2) / (0.03 r^2), 0, 1), point-sampled where they sample it, column i at
  world x = i * world / (W - 1) (their `linspace(0, 1, W)`; rows likewise, top row at y = world).
  Their parser reads pixel i as x = i * world / W, so positions parsed from these frames shrink
  by (W - 1) / W about the origin and velocities by v / W (docs/eval.md: the paper's GT floors).
  Boxes have no soft edge in the paper; `paper` samples them hard. PHYRE-like shapes (`DRAWERS`)
  are drawn in our convention in both styles.

Speed: compiled (numba) kernels visit only the pixels near each object: per row, the chord of a
disc widened by a pixel; the chord where a disc's coverage is surely 1 is filled with its colour
without computing it. The canvas is channel-planar (3, T, H, W), the layout the frame encoder
compresses best, and knows the tight box of what each object painted in each frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numba import njit

from datagen.render_shapes import draw_pieces
from datagen.scenes import States
from phyworld.data.pixels import in_frame, world_to_pixel

STYLES = ("aa", "paper")
PAPER_EDGE = 0.03  # the authors' soft band, as a fraction of r^2


def placement(style: str, world_size: float, resolution: int) -> tuple[float, float]:
    """(pixels per world unit, offset): a style draws world x at continuous u = x * scale +
    offset (v = (world - y) * scale + offset). `aa`: our convention (resolution / world, 0);
    `paper`: the authors', pixel i's centre at x = i * world / (W - 1): ((W - 1) / world, 0.5)."""
    if style == "paper":
        return (resolution - 1) / world_size, 0.5
    return resolution / world_size, 0.0


def first_hidden(states: States, world_size: float, frames: int) -> tuple[int, int] | None:
    """(frame, object) of the first moving object not fully inside the frame in one of the
    first `frames` frames, or None when every one is (static scenery may touch the border)."""
    for k, obj in enumerate(states.objects):
        if not obj.get("dynamic", True):
            continue
        half = np.array(extent(obj, states.angles[:frames, k]))
        inside = in_frame(states.positions[:frames, k].astype(np.float64), half, world_size)
        if not inside.all():
            return int(np.argmin(inside)), k
    return None


def extent(obj: dict, angles: np.ndarray) -> tuple[float, float]:
    """Half-width and half-height (world units) of a box around the centre that holds the
    object at every angle in `angles` (a thin wall gets a thin patch, not a square one)."""
    if obj["shape"] in ("circle", "ring"):
        return obj["radius"], obj["radius"]
    w, h = obj["size"]
    c, s = np.abs(np.cos(angles)).max(initial=0.0), np.abs(np.sin(angles)).max(initial=0.0)
    return 0.5 * float(c * w + s * h), 0.5 * float(s * w + c * h)


# --------------------------------------------------------------------------------------------
# Compiled kernels: coverage of one object, blended into the canvas
# --------------------------------------------------------------------------------------------
# The point-sampled coverages (boxes, the paper's soft edge) are float32 and written out step by
# step as the numpy formulation (tests compare every pixel); the exact disc areas are float64.

F0, F1, HALF = np.float32(0.0), np.float32(1.0), np.float32(0.5)
# Pixels: how far the chords a disc's row is cut to reach past (outer) or stop short of (inner)
# their exact ends; float rounding moves those ends by ~1e-6 px, 50000x less.
EDGE_MARGIN = 0.05
CIRCLE, RING, BOX = 0, 1, 2
KINDS = {"circle": CIRCLE, "ring": RING, "box": BOX}


@njit(cache=True, inline="always")
def _clip01(x):
    return min(max(x, F0), F1)


@njit(cache=True, inline="always")
def _coverage(kind, paper, k, dx, dy, c, s):
    """Alpha in [0, 1] at offset (dx, dy) pixels (x right, y up) from the centre. `k`: the
    shape's float32 constants (`_shape_constants`); c, s: cos and sin of the box's angle.

    box:             signed distance sdf to the rotated rectangle; aa: clip(0.5 - sdf), paper: sdf < 0
    circle (paper):  clip((r^2 - d2) / (0.03 r^2))   (aa discs are exact areas: `_paint_discs`)
    ring (paper):    min(circle, clip((d2 - r_in^2) / (0.03 r_in^2)))
    """
    if kind == BOX:
        lx = abs(c * dx + s * dy) - k[0]
        ly = abs(-s * dx + c * dy) - k[1]
        mx, my = max(lx, F0), max(ly, F0)
        sdf = np.sqrt(mx * mx + my * my) + min(max(lx, ly), F0)
        if paper:
            return F1 if sdf < F0 else F0
        return _clip01(HALF - sdf)
    d2 = dx * dx + dy * dy
    a = _clip01((k[0] - d2) / k[1])
    if kind == RING:
        a = min(a, _clip01((d2 - k[2]) / k[3]))
    return a


@njit(cache=True, inline="always")
def _blend(pixels, f, i, j, colour, a):
    """pixels[:, f, i, j] = rint(old + (colour - old) * a): over white, the same as a copy of
    the object's colour at coverage a (so a frame's first object needs no special case)."""
    # Unsigned indices (all >= 0 here) spare numba's negative-index wraparound: ~4x faster.
    fu, iu, ju = np.uint64(f), np.uint64(i), np.uint64(j)
    for ch in range(np.uint64(3)):
        old = np.float32(pixels[ch, fu, iu, ju])
        pixels[ch, fu, iu, ju] = np.uint8(np.rint(old + (colour[ch] - old) * a))


@njit(cache=True, inline="always")
def _fill(pixels, f, i, j0, j1, colour_u8):
    """Columns j0 <= j < j1 of row i of frame f become the colour (coverage 1)."""
    fu, iu = np.uint64(f), np.uint64(i)
    for ch in range(np.uint64(3)):
        for j in range(np.uint64(j0), np.uint64(j1)):
            pixels[ch, fu, iu, j] = colour_u8[ch]


NO_PIXEL = 1 << 62  # a span's first column when it covered none (any real one is less)


@njit(cache=True, inline="always")
def _blend_span(pixels, f, i, j0, j1, colour, shape):
    """Blend the object into columns j0 <= j < j1 of row i of frame f, where its coverage must be
    computed; `shape` = (kind, paper, k, u, dy, c, s) as `_coverage` takes them, u the centre's
    column. Returns the first and last column it covered (NO_PIXEL, -1 when none)."""
    kind, paper, k, u, dy, c, s = shape
    first, last = NO_PIXEL, -1
    for j in range(j0, j1):
        dx = np.float32(j + 0.5 - u)
        a = _coverage(kind, paper, k, dx, dy, c, s)
        if a > F0:
            _blend(pixels, f, i, j, colour, a)
            first, last = min(first, j), j
    return first, last


@njit(cache=True)
def _paint_shape(
    pixels, boxes, xy, world, scale, offset, cos_a, sin_a, ex, ey, kind, paper, k, colour
):
    """Paint one box (either style) or paper-style circle / ring centred at world `xy` (T, 2) in
    every frame; returns the number of (frame, row0, row1, col0, col1) rows written to `boxes`,
    each the smallest box around the pixels it covered.

    Its centre in pixels is u = x * scale + offset, v = (world - y) * scale + offset
    (`placement`); the patch of frame f spans columns floor(u) - ex ... floor(u) + ex (rows
    likewise with ey); the offsets of pixel centres are computed in float64 and rounded to
    float32, as `datagen.render_shapes.patch_offsets` does."""
    _, t, h, w = pixels.shape
    # Squared reach of a paper disc in pixels: alpha > 0 only where d2 < r^2, and alpha = 1
    # where d2 <= r^2 - 0.03 r^2.
    reach2 = np.float64(k[0])
    full2 = np.float64(k[0]) - np.float64(k[1])
    colour_u8 = np.rint(colour).astype(np.uint8)  # what full coverage blends to
    n = 0
    for f in range(t):
        u = np.float64(xy[f, 0]) * scale + offset
        v = (world - np.float64(xy[f, 1])) * scale + offset
        c0, r0 = np.int64(np.floor(u)) - ex, np.int64(np.floor(v)) - ey
        top, bottom, left, right = h, -1, w, -1
        for i in range(max(r0, 0), min(r0 + 2 * ey + 1, h)):
            dy = np.float32(v - i - 0.5)
            lo, hi = max(c0, 0), min(c0 + 2 * ex + 1, w)
            fill_lo = fill_hi = lo  # columns [fill_lo, fill_hi) where alpha is surely 1
            if kind != BOX:
                # Outside the disc's chord on this row, widened by EDGE_MARGIN, alpha is 0.
                dy2 = np.float64(dy) * np.float64(dy)
                if reach2 - dy2 < -EDGE_MARGIN:
                    continue
                half = np.sqrt(max(reach2 - dy2, 0.0)) + EDGE_MARGIN
                lo = max(lo, np.int64(np.floor(u - 0.5 - half)))
                hi = max(min(hi, np.int64(np.ceil(u - 0.5 + half)) + 1), lo)
                # Inside the full-coverage chord, narrowed by EDGE_MARGIN (on a chord >= 1 px
                # long: a margin of >= 0.09 in d2), a circle's alpha is 1: its pixels become the
                # colour exactly (rint(old + (colour - old) * 1) = colour), no need to compute it.
                if kind == CIRCLE and full2 - dy2 >= 1.0:
                    half = np.sqrt(full2 - dy2) - EDGE_MARGIN
                    fill_lo = min(max(lo, np.int64(np.ceil(u - 0.5 - half))), hi)
                    fill_hi = max(min(hi, np.int64(np.floor(u - 0.5 + half)) + 1), fill_lo)
                else:
                    fill_lo = fill_hi = hi
            shape = (kind, paper, k, u, dy, cos_a[f], sin_a[f])
            first, last = _blend_span(pixels, f, i, lo, fill_lo, colour, shape)
            if fill_hi > fill_lo:
                _fill(pixels, f, i, fill_lo, fill_hi, colour_u8)
                first, last = min(first, fill_lo), max(last, fill_hi - 1)
            right_first, right_last = _blend_span(pixels, f, i, fill_hi, hi, colour, shape)
            first, last = min(first, right_first), max(last, right_last)
            if last >= 0:  # the row has covered pixels
                top, bottom = min(top, i), max(bottom, i)
                left, right = min(left, first), max(right, last)
        if bottom >= 0:
            boxes[n, 0], boxes[n, 1], boxes[n, 2] = f, top, bottom + 1
            boxes[n, 3], boxes[n, 4] = left, right + 1
            n += 1
    return n


# Exact area of a disc inside a pixel. With the disc's centre at the origin (pixels, y up) and
# h(t) = sqrt(r^2 - t^2) its half chord, a row of pixels spanning y in [yb, yb + 1] holds the
# width w(t) = clip(h, yb, yt) - clip(-h, yb, yt) = m(yt) - m(yb) + m(-yb) - m(-yt) - 1 of the
# disc at column t, m(c) = min(h(t), c). Its integral from 0 to x is a sum of
# C(c, x) = int_0^x min(h, c) dt, which is c x where h > c (|t| < t_c = sqrt(r^2 - c^2)) and
# G(x) = int_0^x h = (x h(x) + r^2 asin(x / r)) / 2 beyond: a pixel's area is that integral
# between its two column edges. G is computed once per column edge and frame, t_c and G(t_c) once
# per row, so a pixel costs a few additions; float64 keeps the differences exact to ~1e-12.


@njit(cache=True, inline="always")
def _chord_area(r, x):
    """G(x) = int_0^x sqrt(r^2 - t^2) dt for x in [-r, r]."""
    return 0.5 * (
        x * math.sqrt(max(r * r - x * x, 0.0)) + r * r * math.asin(min(max(x / r, -1.0), 1.0))
    )


@njit(cache=True, inline="always")
def _band_edge(r, c):
    """(t_c, G(t_c)) of a row edge at height c: where the disc's half chord h equals c."""
    if 0.0 < c < r:
        tc = math.sqrt(r * r - c * c)
        return tc, _chord_area(r, tc)
    return 0.0, 0.0


@njit(cache=True, inline="always")
def _band_integral(x, gx, r, band):
    """int_0^x of the disc's width inside a row band, x in [-r, r] (gx = G(x)); `band` holds
    (c, t_c, G(t_c)) for the four edges c = yt, yb, -yb, -yt, whose terms count +, -, +, -."""
    total = -x
    for e in range(4):
        c, tc, gtc = band[e, 0], band[e, 1], band[e, 2]
        if c <= 0.0:
            part = c * x
        elif c >= r:
            part = gx
        elif abs(x) <= tc:
            part = c * x
        elif x > 0.0:
            part = c * tc + gx - gtc
        else:
            part = -c * tc + gx + gtc
        total += part if e == 0 or e == 2 else -part
    return total


@njit(cache=True)
def _paint_discs(pixels, boxes, xy, world, radii, ex, ey, colour):
    """Paint a disc (`radii` = [r]) or a ring ([r, r_in]: the disc minus the inner one), radii
    in pixels, centred at world `xy` (T, 2), alpha = the exact area of it inside each pixel
    (`aa` style, our convention); boxes as in `_paint_shape`."""
    _, t, h, w = pixels.shape
    s = world / w
    discs = radii.shape[0]
    r = radii[0]
    edges = 2 * ex + 2  # column edges floor(u) - ex ... floor(u) + ex + 1
    xe = np.empty((discs, edges))  # column edges relative to the centre, clamped to [-r_d, r_d]
    ge = np.empty((discs, edges))  # G at those edges
    band = np.empty((discs, 4, 3))  # per disc and row edge yt, yb, -yb, -yt: c, t_c, G(t_c)
    colour_u8 = np.rint(colour).astype(np.uint8)
    n = 0
    for f in range(t):
        u, v = np.float64(xy[f, 0]) / s, (world - np.float64(xy[f, 1])) / s
        c0, r0 = np.int64(np.floor(u)) - ex, np.int64(np.floor(v)) - ey
        for d in range(discs):
            rd = radii[d]
            for e in range(edges):
                x = min(max(c0 + e - u, -rd), rd)
                xe[d, e] = x
                ge[d, e] = _chord_area(rd, x)
        top, bottom, left, right = h, -1, w, -1
        done = -2  # the last row whose band edges are in `band`
        for i in range(max(r0, 0), min(r0 + 2 * ey + 1, h)):
            yt = v - i  # the row's top edge, above the centre (y up); its bottom is yt - 1
            yb = yt - 1.0
            near = 0.0 if yb <= 0.0 <= yt else min(abs(yt), abs(yb))
            if near >= r + EDGE_MARGIN:
                continue
            half = math.sqrt(max(r * r - near * near, 0.0)) + EDGE_MARGIN
            lo = max(max(c0, 0), np.int64(np.floor(u - half)))
            hi = max(min(min(c0 + 2 * ex + 1, w), np.int64(np.ceil(u + half))), lo)
            # Pixels whose four corners are in the disc (a chord narrowed by EDGE_MARGIN) are
            # covered: they become the colour (rint(old + (colour - old) * 1) = colour).
            fill_lo = fill_hi = hi
            far = max(abs(yt), abs(yb))
            if discs == 1 and far < r:
                half = math.sqrt(r * r - far * far) - EDGE_MARGIN
                fill_lo = min(max(lo, np.int64(np.ceil(u - half))), hi)
                fill_hi = max(min(hi, np.int64(np.floor(u + half))), fill_lo)
            for d in range(discs):
                rd, bd = radii[d], band[d]
                if done == i - 1:  # this row's top edge is the last row's bottom edge
                    bd[0, 1], bd[0, 2] = bd[1, 1], bd[1, 2]
                    bd[3, 1], bd[3, 2] = bd[2, 1], bd[2, 2]
                else:
                    bd[0, 1], bd[0, 2] = _band_edge(rd, yt)
                    bd[3, 1], bd[3, 2] = _band_edge(rd, -yt)
                bd[1, 1], bd[1, 2] = _band_edge(rd, yb)
                bd[2, 1], bd[2, 2] = _band_edge(rd, -yb)
                bd[0, 0], bd[1, 0], bd[2, 0], bd[3, 0] = yt, yb, -yb, -yt
            done = i
            first, last = NO_PIXEL, -1
            for j0, j1 in ((lo, fill_lo), (fill_hi, hi)):
                if j1 <= j0:
                    continue
                # A pixel's area is the band integral at its right edge minus at its left one,
                # which is the previous pixel's right edge.
                e = j0 - c0
                outer = _band_integral(xe[0, e], ge[0, e], r, band[0])
                inner = 0.0
                if discs == 2:
                    inner = _band_integral(xe[1, e], ge[1, e], radii[1], band[1])
                for j in range(j0, j1):
                    e += 1
                    a = -outer
                    outer = _band_integral(xe[0, e], ge[0, e], r, band[0])
                    a += outer
                    if discs == 2:
                        a += inner
                        inner = _band_integral(xe[1, e], ge[1, e], radii[1], band[1])
                        a -= inner
                    a32 = min(max(np.float32(a), F0), F1)
                    if a32 > F0:
                        _blend(pixels, f, i, j, colour, a32)
                        first, last = min(first, j), j
            if fill_hi > fill_lo:
                _fill(pixels, f, i, fill_lo, fill_hi, colour_u8)
                first, last = min(first, fill_lo), max(last, fill_hi - 1)
            if last >= 0:
                top, bottom = min(top, i), max(bottom, i)
                left, right = min(left, first), max(right, last)
        if bottom >= 0:
            boxes[n, 0], boxes[n, 1], boxes[n, 2] = f, top, bottom + 1
            boxes[n, 3], boxes[n, 4] = left, right + 1
            n += 1
    return n


@njit(cache=True)
def _paint_alpha(pixels, boxes, alpha, rows0, cols0, colour):
    """Blend a precomputed coverage `alpha` (T, Bh, Bw) whose top-left pixels are (rows0,
    cols0); boxes as in `_paint_shape`."""
    _, t, h, w = pixels.shape
    bh, bw = alpha.shape[1], alpha.shape[2]
    n = 0
    for f in range(t):
        r0, c0 = rows0[f], cols0[f]
        top, bottom, left, right = h, -1, w, -1
        for i in range(max(r0, 0), min(r0 + bh, h)):
            for j in range(max(c0, 0), min(c0 + bw, w)):
                a = alpha[f, i - r0, j - c0]
                if a > F0:
                    _blend(pixels, f, i, j, colour, a)
                    top, bottom = min(top, i), max(bottom, i)
                    left, right = min(left, j), max(right, j)
        if bottom >= 0:
            boxes[n, 0], boxes[n, 1], boxes[n, 2] = f, top, bottom + 1
            boxes[n, 3], boxes[n, 4] = left, right + 1
            n += 1
    return n


@njit(cache=True)
def _whiten(pixels, boxes):
    """Set the pixels of every (frame, row0, row1, col0, col1) box back to white."""
    for b in range(boxes.shape[0]):
        f, r0, r1, c0, c1 = boxes[b, 0], boxes[b, 1], boxes[b, 2], boxes[b, 3], boxes[b, 4]
        for ch in range(3):
            pixels[ch, f, r0:r1, c0:c1] = 255  # a slice: ~6x faster than an element loop


def _shape_constants(obj: dict, scale: float, style: str) -> np.ndarray:
    """The float32 constants of `_coverage`, from Python floats (float64) as numpy rounds them."""
    shape = obj["shape"]
    if shape == "box":
        w, h = obj["size"]
        k = [w * scale / 2, h * scale / 2]
    else:  # the paper's soft edge
        r = obj["radius"] * scale
        k = [r * r, PAPER_EDGE * r * r]
        if shape == "ring":
            r_in = obj["inner_radius"] * scale
            k += [r_in * r_in, PAPER_EDGE * r_in * r_in]
    return np.array(k + [0.0] * (4 - len(k)), dtype=np.float32)


class Canvas:
    """Frames being painted: pixels (3, T, H, W) uint8 on white, plus the box around what each
    object painted in each frame (the frame encoder compresses only those)."""

    def __init__(self, frames: int, resolution: int) -> None:
        self.pixels = np.full((3, frames, resolution, resolution), 255, dtype=np.uint8)
        self.painted: list[np.ndarray] = []  # (K, 5) frame, row0, row1, col0, col1 per object

    def frames(self) -> np.ndarray:
        """(T, H, W, 3) uint8, a view of the planar pixels."""
        return self.pixels.transpose(1, 2, 3, 0)

    def boxes(self) -> np.ndarray:
        """(K, 5) uint16 frame, row0, row1, col0, col1 of every painted patch: outside them,
        everything is white (see `phyworld.data.codec.encode_frames`)."""
        if not self.painted:
            return np.zeros((0, 5), dtype=np.uint16)
        return np.concatenate(self.painted).astype(np.uint16)

    def _boxes_buffer(self) -> np.ndarray:
        return np.empty((self.pixels.shape[1], 5), dtype=np.int64)

    def paint(self, colour, alpha: np.ndarray, rows0: np.ndarray, cols0: np.ndarray) -> None:
        """Paint `colour` with coverage `alpha` (T, Bh, Bw) whose top-left pixels are (rows0, cols0)."""
        boxes = self._boxes_buffer()
        n = _paint_alpha(
            self.pixels,
            boxes,
            np.asarray(alpha, dtype=np.float32),
            np.asarray(rows0, dtype=np.int64),
            np.asarray(cols0, dtype=np.int64),
            np.asarray(colour, dtype=np.float32),
        )
        self.painted.append(boxes[:n])

    def clear(self) -> None:
        """Back to all white, for the next video: only the painted boxes are rewritten."""
        if self.painted:
            _whiten(self.pixels, np.concatenate(self.painted))
        self.painted = []

    def paint_shape(
        self, obj: dict, xy: np.ndarray, angles: np.ndarray, world_size: float, style: str
    ) -> None:
        """Paint a circle / ring / box `obj` centred at world `xy` (T, 2) in every frame."""
        scale, offset = placement(style, world_size, self.pixels.shape[3])
        ex, ey = extent(obj, angles)
        ex, ey = int(np.ceil(ex * scale + 1.0)), int(np.ceil(ey * scale + 1.0))
        xy = np.ascontiguousarray(xy, dtype=np.float32)
        colour = np.asarray(obj["colour"], dtype=np.float32)
        boxes = self._boxes_buffer()
        if style == "aa" and obj["shape"] != "box":
            radii = [obj["radius"]] + ([obj["inner_radius"]] if obj["shape"] == "ring" else [])
            radii = np.array(radii, dtype=np.float64) * scale
            n = _paint_discs(self.pixels, boxes, xy, float(world_size), radii, ex, ey, colour)
            self.painted.append(boxes[:n])
            return
        if obj["shape"] == "box":  # numpy's float32 cos / sin, as the reference renderer
            a32 = angles.astype(np.float32)
            cos_a, sin_a = np.cos(a32), np.sin(a32)
        else:
            cos_a = sin_a = np.zeros(len(xy), dtype=np.float32)
        n = _paint_shape(
            self.pixels,
            boxes,
            xy,
            float(world_size),
            scale,
            offset,
            cos_a,
            sin_a,
            ex,
            ey,
            KINDS[obj["shape"]],
            style == "paper",
            _shape_constants(obj, scale, style),
            colour,
        )
        self.painted.append(boxes[:n])


# Shapes drawn by other modules (PHYRE-like `polygon`, `compound`: datagen.render_shapes):
# drawer(canvas: Canvas, obj, centres_uv (T, 2), angles (T,), scale, style) -> None; a drawer
# computes coverage patches (`datagen.render_shapes.patch_offsets`) and calls `canvas.paint`.
DRAWERS: dict[str, Callable[..., None]] = {"compound": draw_pieces, "polygon": draw_pieces}


def render(states: States, resolution: int, world_size: float, style: str = "aa") -> np.ndarray:
    """Frames (T, H, W, 3) uint8 RGB on white, objects painted in order (later ones on top).

    The returned array is a view of a channel-planar (3, T, H, W) buffer, which is what
    `phyworld.data.codec.encode_frames` stores; `np.ascontiguousarray` it if a consumer needs
    (T, H, W, 3) memory order.
    """
    return draw(states, resolution, world_size, style).frames()


def draw(
    states: States,
    resolution: int,
    world_size: float,
    style: str = "aa",
    canvas: Canvas | None = None,
) -> Canvas:
    """Paint every object; the `Canvas` also knows each frame's painted box (for the encoder).
    Pass the `canvas` of an earlier video (same frames and resolution) to paint over it once
    cleared: cheaper than a new one when its frames are no longer needed (a generator's loop)."""
    if style not in STYLES:
        raise ValueError(f"unknown render style '{style}': use one of {STYLES}")
    t = states.positions.shape[0]
    if canvas is None or canvas.pixels.shape != (3, t, resolution, resolution):
        canvas = Canvas(t, resolution)
    else:
        canvas.clear()
    scale = resolution / world_size  # pixels per world unit
    for i, obj in enumerate(states.objects):
        if obj["shape"] in KINDS:
            canvas.paint_shape(obj, states.positions[:, i], states.angles[:, i], world_size, style)
            continue
        # PHYRE-like shapes: our convention in both styles (the authors' placement is their
        # kinematic generator's; their PHYRE fork renders with PHYRE's own).
        uv = world_to_pixel(states.positions[:, i], world_size, resolution)
        DRAWERS[obj["shape"]](canvas, obj, uv, states.angles[:, i], scale, style)
    return canvas
