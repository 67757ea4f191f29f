"""Filled circles and convex polygons, drawn only where they are.

A video is the background (white plus everything static, drawn once) copied into each frame,
with the moving objects drawn on top. An object is drawn row by row: for each pixel row its
bounding box touches, the span of pixel centres inside the shape is found from the shape's
geometry (a chord of the circle, the two edge crossings of the convex polygon), and only that
span is written. Nothing is computed for the rest of the frame, so the cost grows with the
objects' area, not the image size.

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


@dataclass(frozen=True)
class Body:
    """What the renderer needs of one object: its convex pieces in the body frame (world units).

    `circles`: (k, 3) rows of local centre x, y and radius; `polygons`: convex polygons, each an
    (n, 2) array of local vertices in order (either winding). `colour`: RGB.
    """

    circles: np.ndarray
    polygons: tuple[np.ndarray, ...]
    colour: tuple[int, int, int]


def _fill_spans(
    planes: np.ndarray, frame: np.ndarray, j0: np.ndarray, lo: np.ndarray, hi: np.ndarray, colour
) -> None:
    """Fill, for each item k, in frame frame[k] and row j0[k] + r, the pixels
    lo[k, r] <= i <= hi[k, r] (inclusive).

    `planes` is a channel-planar (T, 3, H, W) stack. All items at once: the spans become one
    list of flat pixel indices, written with one assignment per colour channel.
    """
    _, _, height, width = planes.shape
    plane = height * width
    rows = j0[:, None] + np.arange(lo.shape[1])  # (K, R)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, width - 1)
    counts = np.where((rows >= 0) & (rows < height), hi - lo + 1, 0).clip(min=0).ravel()
    total = int(counts.sum())
    if total == 0:
        return
    starts = (frame[:, None] * 3 * plane + rows * width + lo).ravel()
    run_begin = np.cumsum(counts) - counts  # where each span starts in the flat list
    # int32 indices (a video is far below 2^31 bytes) halve the memory traffic.
    index = np.int32 if planes.size < 2**31 else np.int64
    flat = np.repeat((starts - run_begin).astype(index), counts)
    flat += np.arange(total, dtype=index)  # red-plane indices
    pixels = planes.reshape(-1)
    for c in range(3):
        pixels[flat] = colour[c]
        flat += plane  # the next colour plane


def fill_circles(
    planes: np.ndarray, centres: np.ndarray, radii: np.ndarray, frame: np.ndarray, colour
) -> None:
    """Fill, for each item k, in frame frame[k], the pixels whose centres lie within radii[k] of
    centres[k] (pixel units)."""
    if len(centres) == 0:
        return
    cu, cv, r = centres[:, 0, None], centres[:, 1, None], radii[:, None]
    j0 = np.ceil(cv - r - 0.5).astype(np.int64)  # first row whose centre can be inside
    rows = int(np.ceil(2 * radii.max())) + 1
    dv = j0 + np.arange(rows) + 0.5 - cv  # (K, R) row centre to circle centre
    inside = dv * dv <= r * r
    half = np.sqrt(np.maximum(r * r - dv * dv, 0.0))  # half chord on each row
    lo = np.ceil(cu - half - 0.5).astype(np.int64)
    hi = np.where(inside, np.floor(cu + half - 0.5), lo - 1).astype(np.int64)
    _fill_spans(planes, frame, j0[:, 0], lo, hi, colour)


def fill_convex_polygons(planes: np.ndarray, uv: np.ndarray, frame: np.ndarray, colour) -> None:
    """Fill, for each item k, in frame frame[k], the pixels whose centres lie inside the convex
    polygon uv[k].

    uv: (K, n, 2) vertices in pixel units, in order (either winding). A row's span runs between
    the leftmost and rightmost points where the row's centre line crosses an edge.
    """
    if len(uv) == 0:
        return
    v_min, v_max = uv[:, :, 1].min(axis=1), uv[:, :, 1].max(axis=1)
    j0 = np.ceil(v_min - 0.5).astype(np.int64)
    rows = max(int((np.floor(v_max - 0.5) - j0).max()) + 1, 0)
    if rows == 0:
        return
    v = j0[:, None] + np.arange(rows) + 0.5  # (K, R) row centres
    p, q = uv, np.roll(uv, -1, axis=1)  # edges p -> q, (K, n, 2)
    dv = (q[..., 1] - p[..., 1])[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (v[:, None, :] - p[..., 1, None]) / dv  # (K, n, R): where each row meets each edge
    hit = (t >= 0.0) & (t <= 1.0)  # false for horizontal edges (t is inf or nan)
    u = p[..., 0, None] + t * (q[..., 0] - p[..., 0])[..., None]
    left = np.where(hit, u, np.inf).min(axis=1)
    right = np.where(hit, u, -np.inf).max(axis=1)
    ok = np.isfinite(left)
    lo = np.where(ok, np.ceil(left - 0.5), 1).astype(np.int64)
    hi = np.where(ok, np.floor(right - 0.5), 0).astype(np.int64)
    _fill_spans(planes, frame, j0, lo, hi, colour)


def _posed(local: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Local points (n, 2) at poses (T, 3) of x, y, angle -> world points (T, n, 2)."""
    c, s = np.cos(pose[:, 2]), np.sin(pose[:, 2])
    x = c[:, None] * local[None, :, 0] - s[:, None] * local[None, :, 1] + pose[:, 0, None]
    y = s[:, None] * local[None, :, 0] + c[:, None] * local[None, :, 1] + pose[:, 1, None]
    return np.stack([x, y], axis=-1)


def _draw(planes: np.ndarray, bodies: list[Body], poses: list[np.ndarray], world_size: float):
    """Draw bodies of one colour at their poses (each (T, 3)) into planes (T, 3, H, W).

    One colour, so their order among themselves does not matter: every piece of every body in
    every frame is one item of a single batched fill per shape kind (and polygon size).
    """
    resolution = planes.shape[3]
    frames = np.arange(planes.shape[0])
    centres, radii, polys = [], [], {}
    for body, pose in zip(bodies, poses):
        for row in body.circles:
            centres.append(_posed(row[None, :2], pose)[:, 0])  # (T, 2)
            radii.append(np.full(len(pose), row[2]))
        for poly in body.polygons:
            polys.setdefault(len(poly), []).append(_posed(poly, pose))  # (T, n, 2)
    colour = [int(c) for c in bodies[0].colour]
    if centres:
        fill_circles(
            planes,
            world_to_pixel(np.concatenate(centres), world_size, resolution),
            np.concatenate(radii) * resolution / world_size,
            np.tile(frames, len(centres)),
            colour,
        )
    for group in polys.values():
        uv = world_to_pixel(np.concatenate(group), world_size, resolution)
        fill_convex_polygons(planes, uv, np.tile(frames, len(group)), colour)


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
) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of `bodies` at `poses` (T, N, 3: x, y, angle in world units).

    Static bodies (`dynamic[k]` false) are drawn once, at their first pose, into the background;
    later bodies in the list are drawn over earlier ones. The result is a view of channel-planar
    (T, 3, H, W) memory, the layout `datagen.schema.encode_frames` stores without a copy.
    """
    dynamic = np.asarray(dynamic, dtype=bool)
    background = np.full((1, 3, resolution, resolution), 255, dtype=np.uint8)
    for run in _runs(bodies, ~dynamic):
        _draw(background, [bodies[k] for k in run], [poses[:1, k] for k in run], world_size)
    planes = np.empty((poses.shape[0], 3, resolution, resolution), dtype=np.uint8)
    planes[:] = background
    for run in _runs(bodies, dynamic):
        _draw(planes, [bodies[k] for k in run], [poses[:, k] for k in run], world_size)
    return planes.transpose(0, 2, 3, 1)


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
