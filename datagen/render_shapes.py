"""Filled circles and convex polygons, drawn only where they are.

A video is the background (white plus everything static, drawn once) copied into each frame,
with the moving objects drawn on top. An object is drawn row by row: for each pixel row it
touches, the span of pixel centres inside the shape is found from the shape's geometry (a chord
of the circle, the two edge crossings of the convex polygon), and only that span is written.
Nothing is computed for the rest of the frame, so the cost grows with the objects' area, not
the image size. The rows are found and written by compiled (numba) kernels, all pieces of all
same-colour bodies in all frames in one call per shape kind; numba compiles them on first use
and caches them (see docs/datagen.md on `NUMBA_CACHE_DIR`).

Hard edges: a pixel takes an object's colour when its centre lies inside the object, the PHYRE
convention, so every pixel holds exactly one palette colour and eval can segment by colour.
(`supersample=2` draws that way at twice the resolution and averages 2 x 2 blocks: the authors'
512-pixel render downscaled to 256, with blended colours along edges.)

Pixel convention (ARCHITECTURE.md): pixel (i, j), column i and row j, covers world
x in [i*s, (i+1)*s) and y in [world - (j+1)*s, world - j*s) with s = world_size / W; its centre
is at x = (i + 0.5) s, y = world - (j + 0.5) s. Here shapes are given in pixel units u = x / s,
v = (world - y) / s (`phyworld.data.pixels.world_to_pixel`), so pixel (i, j) has its centre at
(u, v) = (i + 0.5, j + 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from phyworld.data.pixels import world_to_pixel


@dataclass(frozen=True)
class Body:
    """What the renderer needs of one object: its convex pieces in the body frame (world units).

    `circles`: (k, 3) rows of local centre x, y and radius; `polygons`: convex polygons, each an
    (n, 2) array of local vertices in order (either winding). `colour`: RGB.
    """

    circles: np.ndarray
    polygons: tuple[np.ndarray, ...]
    colour: tuple[int, int, int]


# ----------------------------------------------------------------------------------------------
# Compiled kernels (numba): per row of each item, the span of pixel centres inside the shape
# ----------------------------------------------------------------------------------------------
# float64 arithmetic written out in the order of the formulas in the docstrings; numba neither
# reorders nor fuses float operations without fastmath, and error_model="numpy" gives IEEE
# inf / nan on division by zero (a horizontal edge), as numpy does.


@njit(cache=True, inline="always")
def _span(planes, f, row, lo, hi, colour):
    """planes[f, :, row, lo..hi] = colour, the columns clipped to the image."""
    lo, hi = max(lo, 0), min(hi, planes.shape[3] - 1)
    if lo <= hi:  # (a span left of the image would otherwise end at a negative, wrapped index)
        for ch in range(3):
            planes[f, ch, row, lo : hi + 1] = colour[ch]


@njit(cache=True, error_model="numpy")
def _fill_circles(planes, centres, radii, frame, colour):
    """Per item k and row: dv = row + 0.5 - v_k; if dv^2 <= r^2, the chord
    ceil(u_k - h - 0.5) .. floor(u_k + h - 0.5) with h = sqrt(max(r^2 - dv^2, 0))."""
    height = planes.shape[2]
    for k in range(len(radii)):
        cu, cv, r = centres[k, 0], centres[k, 1], radii[k]
        top = np.int64(np.ceil(cv - r - 0.5))  # the first row whose centre can be inside
        for row in range(max(top, 0), min(top + np.int64(np.ceil(2 * r)) + 1, height)):
            dv = row + 0.5 - cv
            if dv * dv <= r * r:
                half = np.sqrt(max(r * r - dv * dv, 0.0))
                lo, hi = np.int64(np.ceil(cu - half - 0.5)), np.int64(np.floor(cu + half - 0.5))
                _span(planes, frame[k], row, lo, hi, colour)


@njit(cache=True, error_model="numpy")
def _fill_polygons(planes, uv, frame, colour):
    """Per item k and row (centre line v = row + 0.5): each edge p -> q meets it at
    t = (v - p_v) / (q_v - p_v), u = p_u + t (q_u - p_u) if 0 <= t <= 1; the span runs from
    ceil(min u - 0.5) to floor(max u - 0.5)."""
    height, n = planes.shape[2], uv.shape[1]
    for k in range(uv.shape[0]):
        v_min, v_max = np.inf, -np.inf
        for e in range(n):
            v_min, v_max = min(v_min, uv[k, e, 1]), max(v_max, uv[k, e, 1])
        top, bottom = np.int64(np.ceil(v_min - 0.5)), np.int64(np.floor(v_max - 0.5))
        for row in range(max(top, 0), min(bottom + 1, height)):
            v = row + 0.5
            left, right = np.inf, -np.inf
            for e in range(n):
                q = (e + 1) % n
                pu, pv = uv[k, e, 0], uv[k, e, 1]
                t = (v - pv) / (uv[k, q, 1] - pv)
                if t >= 0.0 and t <= 1.0:  # false for a horizontal edge (t is inf or nan)
                    u = pu + t * (uv[k, q, 0] - pu)
                    left, right = min(left, u), max(right, u)
            if left <= right:
                lo, hi = np.int64(np.ceil(left - 0.5)), np.int64(np.floor(right - 0.5))
                _span(planes, frame[k], row, lo, hi, colour)


def fill_circles(
    planes: np.ndarray, centres: np.ndarray, radii: np.ndarray, frame: np.ndarray, colour
) -> None:
    """Fill, in the channel-planar (T, 3, H, W) uint8 `planes`, for each item k, in frame
    frame[k], the pixels whose centres lie within radii[k] of centres[k] (pixel units)."""
    _fill_circles(
        planes,
        np.ascontiguousarray(centres, dtype=np.float64),
        np.ascontiguousarray(radii, dtype=np.float64),
        np.ascontiguousarray(frame, dtype=np.int64),
        np.asarray(colour, dtype=np.uint8),
    )


def fill_convex_polygons(planes: np.ndarray, uv: np.ndarray, frame: np.ndarray, colour) -> None:
    """Fill, in the channel-planar (T, 3, H, W) uint8 `planes`, for each item k, in frame
    frame[k], the pixels whose centres lie inside the convex polygon uv[k] ((K, n, 2) vertices
    in pixel units, in order, either winding): on each row, from the leftmost to the rightmost
    point where the row's centre line crosses an edge."""
    _fill_polygons(
        planes,
        np.ascontiguousarray(uv, dtype=np.float64),
        np.ascontiguousarray(frame, dtype=np.int64),
        np.asarray(colour, dtype=np.uint8),
    )


def _posed(local: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Local points (n, 2) at poses (T, 3) of x, y, angle -> world points (T, n, 2)."""
    c, s = np.cos(pose[:, 2]), np.sin(pose[:, 2])
    x = c[:, None] * local[None, :, 0] - s[:, None] * local[None, :, 1] + pose[:, 0, None]
    y = s[:, None] * local[None, :, 0] + c[:, None] * local[None, :, 1] + pose[:, 1, None]
    return np.stack([x, y], axis=-1)


def _draw(planes: np.ndarray, bodies: list[Body], poses: list[np.ndarray], world_size: float):
    """Draw bodies of one colour at their poses (each (T, 3)) into planes (T, 3, H, W).

    One colour, so their order among themselves does not matter: every piece of every body in
    every frame is one item of a single compiled fill per shape kind (and polygon size).
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
    colour = bodies[0].colour
    if centres:
        uv = world_to_pixel(np.concatenate(centres), world_size, resolution)
        r = np.concatenate(radii) * resolution / world_size
        fill_circles(planes, uv, r, np.tile(frames, len(centres)), colour)
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


@njit(cache=True)
def _half(src, dst):
    """dst[f, ch, i, j] = the mean of src's 2 x 2 block at (2 i, 2 j), rounded half up."""
    for f in range(dst.shape[0]):
        for ch in range(3):
            for i in range(dst.shape[2]):
                top, bottom, row = src[f, ch, 2 * i], src[f, ch, 2 * i + 1], dst[f, ch, i]
                for j in range(dst.shape[3]):
                    total = (
                        np.uint16(top[2 * j])
                        + np.uint16(top[2 * j + 1])
                        + np.uint16(bottom[2 * j])
                        + np.uint16(bottom[2 * j + 1])
                    )
                    row[j] = (total + 2) >> 2


# The supersampled drawing of the last call, kept for the next: a fresh 25 MB array per video
# (512 x 512 x 32) costs more in page faults than the drawing.
_SCRATCH: dict[tuple[int, ...], np.ndarray] = {}


def render_video(
    bodies: list[Body],
    poses: np.ndarray,
    dynamic: np.ndarray,
    world_size: float,
    resolution: int,
    out: np.ndarray | None = None,
    supersample: int = 1,
) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of `bodies` at `poses` (T, N, 3: x, y, angle in world units).

    Static bodies (`dynamic[k]` false) are drawn once, at their first pose, into the background;
    later bodies in the list are drawn over earlier ones. The result is a view of channel-planar
    (T, 3, H, W) memory, the layout `phyworld.data.codec.encode_frames` stores without a copy: `out`,
    if given (a C-contiguous (T, 3, H, W) uint8 array, overwritten), else a new array. Reusing
    one `out` for video after video saves the page faults of a fresh 6 MB array (256 x 256 x
    32), more than the drawing costs.

    `supersample` 2: drawn hard-edged at twice `resolution` (in a buffer kept between calls),
    then each output pixel is the mean of its 2 x 2 block (rounded half up): edges get the
    blended colours of a larger render downscaled by area averaging.
    """
    shape = (poses.shape[0], 3, resolution, resolution)
    if out is None:
        out = np.empty(shape, dtype=np.uint8)
    elif out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous {shape} uint8 array (frames, RGB, rows, columns), got "
            f"{out.shape} {out.dtype}: allocate it with np.empty({shape}, np.uint8)"
        )
    if supersample not in (1, 2):
        raise ValueError(f"supersample must be 1 or 2, got {supersample}")
    if supersample == 2:
        big = (shape[0], 3, 2 * resolution, 2 * resolution)
        scratch = _SCRATCH.get(big)
        if scratch is None:
            _SCRATCH.clear()
            scratch = _SCRATCH[big] = np.empty(big, dtype=np.uint8)
        render_video(bodies, poses, dynamic, world_size, big[-1], scratch)
        _half(scratch, out)
        return out.transpose(0, 2, 3, 1)
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


def patch_offsets(uv: np.ndarray, extent_px: float, extent_y_px: float | None = None):
    """Patch geometry around centres `uv` (T, 2) for an object reaching `extent_px` pixels
    left/right of its centre (and `extent_y_px` up/down; default the same): top-left rows0,
    cols0 (T,) and the pixel-centre offsets from the centre in pixels, world axes (y up),
    dx (T, 1, Bw) and dy (T, Bh, 1)."""
    ex = int(np.ceil(extent_px + 1.0))
    ey = int(np.ceil((extent_px if extent_y_px is None else extent_y_px) + 1.0))
    cols0 = np.floor(uv[:, 0]).astype(np.int64) - ex
    rows0 = np.floor(uv[:, 1]).astype(np.int64) - ey
    dx = ((cols0[:, None] + np.arange(2 * ex + 1)) + 0.5 - uv[:, :1]).astype(np.float32)[:, None, :]
    dy = (uv[:, 1:] - (rows0[:, None] + np.arange(2 * ey + 1)) - 0.5).astype(np.float32)[:, :, None]
    return rows0, cols0, dx, dy


def _pieces(obj: dict) -> list[np.ndarray]:
    if obj["shape"] == "compound":
        return [np.asarray(p, dtype=np.float64) for p in obj["pieces"]]
    return [np.asarray(obj["vertices"], dtype=np.float64)]


def draw_pieces(canvas, obj: dict, uv: np.ndarray, angles: np.ndarray, scale: float, style: str):
    """A `datagen.render.DRAWERS` entry: hard-edged convex pieces (both styles: PHYRE has no
    soft edge), painted through the generic canvas (`datagen.render.Canvas`) so they layer with
    the other shapes."""
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
