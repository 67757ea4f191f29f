"""Filled circles and convex polygons, drawn only where they are.

A video is the background (white plus everything static, drawn once) copied into each frame,
with the moving objects drawn on top. An object is drawn row by row: for each pixel row it
touches, the span of pixel centres inside the shape is found from the shape's geometry (a chord
of the circle, the two edge crossings of the convex polygon), and only that span is written.
Nothing is computed for the rest of the frame, so the cost grows with the objects' area, not
the image size. All rows of all pieces of all same-colour bodies in all frames are one flat
list of spans, written with one scatter per colour channel.

Hard edges: a pixel takes an object's colour when its centre lies inside the object, the PHYRE
convention, so every pixel holds exactly one palette colour and eval can segment by colour.

Pixel convention (ARCHITECTURE.md): pixel (i, j), column i and row j, covers world
x in [i*s, (i+1)*s) and y in [world - (j+1)*s, world - j*s) with s = world_size / W; its centre
is at x = (i + 0.5) s, y = world - (j + 0.5) s. Here shapes are given in pixel units u = x / s,
v = (world - y) / s (`datagen.render.world_to_pixel`), so pixel (i, j) has its centre at
(u, v) = (i + 0.5, j + 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datagen.render import DRAWERS, patch_offsets, world_to_pixel

# Spans of pixels to fill, one per (item, pixel row), as flat int64 arrays of equal length:
# frame, row, first and last column (inclusive; last < first for an empty span).
Spans = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Body:
    """What the renderer needs of one object: its convex pieces in the body frame (world units).

    `circles`: (k, 3) rows of local centre x, y and radius; `polygons`: convex polygons, each an
    (n, 2) array of local vertices in order (either winding). `colour`: RGB.
    """

    circles: np.ndarray
    polygons: tuple[np.ndarray, ...]
    colour: tuple[int, int, int]


def _rows(top: np.ndarray, count: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Item k covers rows top[k] .. top[k] + count[k] - 1: (item, row) of each of those rows
    that lies in the image [0, height), flat, item after item."""
    first = np.clip(top, 0, height)
    n = np.clip(top + count, 0, height) - first
    n = np.maximum(n, 0)
    item = np.repeat(np.arange(len(top)), n)
    row = np.repeat(first - (np.cumsum(n) - n), n) + np.arange(len(item))
    return item, row


def circle_spans(centres: np.ndarray, radii: np.ndarray, frame: np.ndarray, height: int) -> Spans:
    """Spans of the pixels whose centres lie within radii[k] of centres[k] (pixel units), in
    frame frame[k]: a chord per row."""
    cu, cv = centres[:, 0], centres[:, 1]
    top = np.ceil(cv - radii - 0.5).astype(np.int64)  # the first row whose centre can be inside
    item, row = _rows(top, np.ceil(2 * radii).astype(np.int64) + 1, height)
    r, cu = radii[item], cu[item]
    dv = row + 0.5 - cv[item]  # row centre to circle centre
    inside = dv * dv <= r * r
    half = np.sqrt(np.maximum(r * r - dv * dv, 0.0))  # half chord
    lo = np.ceil(cu - half - 0.5).astype(np.int64)
    hi = np.where(inside, np.floor(cu + half - 0.5), lo - 1).astype(np.int64)
    return frame[item], row, lo, hi


def polygon_spans(uv: np.ndarray, frame: np.ndarray, height: int) -> Spans:
    """Spans of the pixels whose centres lie inside the convex polygon uv[k] ((K, n, 2) vertices
    in pixel units, in order, either winding), in frame frame[k]: on each row, from the leftmost
    to the rightmost point where the row's centre line crosses an edge."""
    v_min, v_max = uv[:, :, 1].min(axis=1), uv[:, :, 1].max(axis=1)
    top = np.ceil(v_min - 0.5).astype(np.int64)
    item, row = _rows(top, np.floor(v_max - 0.5).astype(np.int64) - top + 1, height)
    v = row + 0.5  # row centres
    left = np.full(len(item), np.inf)
    right = np.full(len(item), -np.inf)
    p, q = uv, np.roll(uv, -1, axis=1)  # edges p -> q, (K, n, 2)
    # Per edge, contiguous (n, K) rows: gathering 1-D arrays by item is the fast numpy path.
    pu, pv = p[..., 0].T.copy(), p[..., 1].T.copy()
    du, dv = (q[..., 0] - p[..., 0]).T.copy(), (q[..., 1] - p[..., 1]).T.copy()
    for e in range(uv.shape[1]):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (v - pv[e].take(item)) / dv[e].take(item)  # where the row meets the edge
        u = pu[e].take(item) + t * du[e].take(item)
        u[(t < 0.0) | ~(t <= 1.0)] = np.nan  # missed (also horizontal edges: t is inf or nan)
        np.fmin(left, u, out=left)  # fmin / fmax skip nan
        np.fmax(right, u, out=right)
    ok = np.isfinite(left)
    lo = np.where(ok, np.ceil(left - 0.5), 1).astype(np.int64)
    hi = np.where(ok, np.floor(right - 0.5), 0).astype(np.int64)
    return frame[item], row, lo, hi


def fill_spans(planes: np.ndarray, spans: Spans, colour) -> None:
    """Write `colour` into the spans' pixels of the channel-planar, C-contiguous (T, 3, H, W)
    uint8 `planes`.

    The spans become one list of flat pixel indices (int64: numpy would convert narrower ones),
    written with one assignment per colour channel.
    """
    if not planes.flags.c_contiguous:  # a flat view must reach the pixels themselves
        raise ValueError("planes must be C-contiguous (T, 3, H, W): np.ascontiguousarray them")
    frame, row, lo, hi = spans
    _, _, height, width = planes.shape
    plane = height * width
    lo = np.maximum(lo, 0)
    counts = np.maximum(np.minimum(hi, width - 1) - lo + 1, 0)
    total = int(counts.sum())
    if total == 0:
        return
    starts = frame * (3 * plane) + row * width + lo
    flat = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    flat += np.arange(total)  # red-plane indices
    pixels = planes.reshape(-1)
    for c in range(3):
        pixels[flat] = colour[c]
        flat += plane  # the next colour plane


def fill_circles(
    planes: np.ndarray, centres: np.ndarray, radii: np.ndarray, frame: np.ndarray, colour
) -> None:
    """Fill, for each item k, in frame frame[k], the pixels whose centres lie within radii[k] of
    centres[k] (pixel units)."""
    fill_spans(planes, circle_spans(centres, radii, frame, planes.shape[2]), colour)


def fill_convex_polygons(planes: np.ndarray, uv: np.ndarray, frame: np.ndarray, colour) -> None:
    """Fill, for each item k, in frame frame[k], the pixels whose centres lie inside the convex
    polygon uv[k] ((K, n, 2) vertices in pixel units, in order, either winding)."""
    fill_spans(planes, polygon_spans(uv, frame, planes.shape[2]), colour)


def _posed(local: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Local points (n, 2) at poses (T, 3) of x, y, angle -> world points (T, n, 2)."""
    c, s = np.cos(pose[:, 2]), np.sin(pose[:, 2])
    x = c[:, None] * local[None, :, 0] - s[:, None] * local[None, :, 1] + pose[:, 0, None]
    y = s[:, None] * local[None, :, 0] + c[:, None] * local[None, :, 1] + pose[:, 1, None]
    return np.stack([x, y], axis=-1)


def _draw(planes: np.ndarray, bodies: list[Body], poses: list[np.ndarray], world_size: float):
    """Draw bodies of one colour at their poses (each (T, 3)) into planes (T, 3, H, W).

    One colour, so their order among themselves does not matter: every piece of every body in
    every frame adds its rows to one list of spans (polygons batched by vertex count).
    """
    height, resolution = planes.shape[2], planes.shape[3]
    frames = np.arange(planes.shape[0])
    centres, radii, polys = [], [], {}
    for body, pose in zip(bodies, poses):
        for row in body.circles:
            centres.append(_posed(row[None, :2], pose)[:, 0])  # (T, 2)
            radii.append(np.full(len(pose), row[2]))
        for poly in body.polygons:
            polys.setdefault(len(poly), []).append(_posed(poly, pose))  # (T, n, 2)
    spans = []
    if centres:
        uv = world_to_pixel(np.concatenate(centres), world_size, resolution)
        r = np.concatenate(radii) * resolution / world_size
        spans.append(circle_spans(uv, r, np.tile(frames, len(centres)), height))
    for group in polys.values():
        uv = world_to_pixel(np.concatenate(group), world_size, resolution)
        spans.append(polygon_spans(uv, np.tile(frames, len(group)), height))
    fill_spans(planes, tuple(np.concatenate(part) for part in zip(*spans)), bodies[0].colour)


def _runs(bodies: list[Body], keep: np.ndarray) -> list[list[int]]:
    """Indices of the kept bodies, cut into runs of consecutive bodies of the same colour."""
    runs: list[list[int]] = []
    for k in np.flatnonzero(keep):
        if runs and bodies[runs[-1][-1]].colour == bodies[k].colour:
            runs[-1].append(int(k))
        else:
            runs.append([int(k)])
    return runs


def render_video(
    bodies: list[Body],
    poses: np.ndarray,
    dynamic: np.ndarray,
    world_size: float,
    resolution: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of `bodies` at `poses` (T, N, 3: x, y, angle in world units).

    Static bodies (`dynamic[k]` false) are drawn once, at their first pose, into the background;
    later bodies in the list are drawn over earlier ones. The result is a view of channel-planar
    (T, 3, H, W) memory, the layout `datagen.schema.encode_frames` stores without a copy: `out`,
    if given (a C-contiguous (T, 3, H, W) uint8 array, overwritten), else a new array. Reusing
    one `out` for video after video saves the page faults of a fresh 6 MB array (256 x 256 x
    32), more than the drawing costs.
    """
    shape = (poses.shape[0], 3, resolution, resolution)
    if out is None:
        out = np.empty(shape, dtype=np.uint8)
    elif out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous {shape} uint8 array (frames, RGB, rows, columns), got "
            f"{out.shape} {out.dtype}: allocate it with np.empty({shape}, np.uint8)"
        )
    dynamic = np.asarray(dynamic, dtype=bool)
    if len(out):
        out[0] = 255
        for run in _runs(bodies, ~dynamic):  # the background, in frame 0 ...
            _draw(out[:1], [bodies[k] for k in run], [poses[:1, k] for k in run], world_size)
        out[1:] = out[0]  # ... copied into the others
    for run in _runs(bodies, dynamic):
        _draw(out, [bodies[k] for k in run], [poses[:, k] for k in run], world_size)
    return out.transpose(0, 2, 3, 1)


# ----------------------------------------------------------------------------------------------
# `compound` and `polygon` objects in `datagen.render.render` (the generic States renderer)
# ----------------------------------------------------------------------------------------------


def _pieces(obj: dict) -> list[np.ndarray]:
    if obj["shape"] == "compound":
        return [np.asarray(p, dtype=np.float64) for p in obj["pieces"]]
    return [np.asarray(obj["vertices"], dtype=np.float64)]


def draw_pieces(canvas, obj: dict, uv: np.ndarray, angles: np.ndarray, scale: float, style: str):
    """A `datagen.render.DRAWERS` entry: hard-edged convex pieces (both styles: PHYRE has no
    soft edge), painted through the generic canvas so they layer with the other shapes."""
    pieces = _pieces(obj)
    extent = max(float(np.linalg.norm(p, axis=1).max()) for p in pieces) * scale
    rows0, cols0, dx, dy = patch_offsets(uv, extent)  # offsets in pixels, world axes (y up)
    c, s = np.cos(angles)[:, None], np.sin(angles)[:, None]
    inside = np.zeros((len(uv), dy.shape[1], dx.shape[2]), dtype=bool)
    for p in pieces:
        x = (c * p[None, :, 0] - s * p[None, :, 1]) * scale  # (T, n) vertices around the centre
        y = (s * p[None, :, 0] + c * p[None, :, 1]) * scale
        ex, ey = np.roll(x, -1, axis=1) - x, np.roll(y, -1, axis=1) - y
        side = [
            ex[:, k, None, None] * (dy - y[:, k, None, None])
            - ey[:, k, None, None] * (dx - x[:, k, None, None])
            for k in range(p.shape[0])
        ]
        inside |= np.all(np.stack(side) >= 0, axis=0) | np.all(np.stack(side) <= 0, axis=0)
    canvas.paint(obj["colour"], inside.astype(np.float32), rows0, cols0)


def _register() -> None:
    DRAWERS.setdefault("compound", draw_pieces)
    DRAWERS.setdefault("polygon", draw_pieces)


_register()
