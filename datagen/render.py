"""States -> frames. The one pixel convention of the project, and the fast renderer.

Pixel convention (ARCHITECTURE.md): the image is `resolution` x `resolution` pixels over a square
world `world_size` wide; world y points up, image rows go down. Pixel (i, j) (column i, row j)
covers world x in [i*s, (i+1)*s), y in [world - (j+1)*s, world - j*s) with s = world_size /
resolution. Continuous pixel coordinates (u, v) put the *edge* of pixel i at u = i and its
centre at u = i + 0.5. Eval converts with `pixel_to_world` / `index_to_world`.

Two renderings (`style`):
- `aa` (default): anti-aliased area coverage, alpha = clip(0.5 - signed distance in pixels, 0, 1),
  which a sub-pixel (alpha-weighted) parser inverts to ~1e-3 world units at 128 px.
- `paper`: the authors' soft edge, alpha = clip((r^2 - d^2) / (0.03 r^2), 0, 1) point-sampled at
  pixel centres (in our convention, not the authors' i / (W - 1)), for exact reproduction.
Boxes have no soft edge in the paper; `paper` samples them hard at pixel centres.

Speed: only the pixels inside each object's bounding box are computed, for all frames at once,
and copied into each frame with one slice assignment (blended only where objects overlap); the
canvas is channel-planar (3, T, H, W), the layout the frame encoder compresses best.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from datagen.scenes import States

STYLES = ("aa", "paper")
PAPER_EDGE = 0.03  # the authors' soft band, as a fraction of r^2


def world_to_pixel(xy: np.ndarray, world_size: float, resolution: int) -> np.ndarray:
    """World (x, y) -> continuous pixel coordinates (u, v); pixel i's centre is at i + 0.5."""
    xy = np.asarray(xy, dtype=np.float64)
    s = world_size / resolution
    return np.stack([xy[..., 0] / s, (world_size - xy[..., 1]) / s], axis=-1)


def pixel_to_world(uv: np.ndarray, world_size: float, resolution: int) -> np.ndarray:
    """Continuous pixel coordinates (u, v) -> world (x, y). Inverse of `world_to_pixel`."""
    uv = np.asarray(uv, dtype=np.float64)
    s = world_size / resolution
    return np.stack([uv[..., 0] * s, world_size - uv[..., 1] * s], axis=-1)


def index_to_world(ij: np.ndarray, world_size: float, resolution: int) -> np.ndarray:
    """Pixel indices (column i, row j), possibly fractional (a centroid) -> world (x, y) of centres."""
    return pixel_to_world(np.asarray(ij, dtype=np.float64) + 0.5, world_size, resolution)


# --------------------------------------------------------------------------------------------
# Coverage of one object on a (T, B, B) patch of pixel-centre offsets (pixels, world axes)
# --------------------------------------------------------------------------------------------


def _circle_alpha(dx, dy, r, style):
    d2 = dx * dx + dy * dy
    if style == "paper":
        return np.clip((r * r - d2) / (PAPER_EDGE * r * r), 0.0, 1.0)
    return np.clip(r + 0.5 - np.sqrt(d2), 0.0, 1.0)


def _ring_alpha(dx, dy, r, r_in, style):
    outer = _circle_alpha(dx, dy, r, style)
    d2 = dx * dx + dy * dy
    if style == "paper":
        inner = np.clip((d2 - r_in * r_in) / (PAPER_EDGE * r_in * r_in), 0.0, 1.0)
    else:
        inner = np.clip(np.sqrt(d2) - r_in + 0.5, 0.0, 1.0)
    return np.minimum(outer, inner)


def _box_alpha(dx, dy, half_w, half_h, angle, style):
    # Rotate the offsets into the box frame (angle is counter-clockwise in world axes).
    c, s = np.cos(angle), np.sin(angle)
    lx = np.abs(c * dx + s * dy) - half_w
    ly = np.abs(-s * dx + c * dy) - half_h
    outside = np.sqrt(np.maximum(lx, 0.0) ** 2 + np.maximum(ly, 0.0) ** 2)
    sdf = outside + np.minimum(np.maximum(lx, ly), 0.0)
    if style == "paper":
        return (sdf < 0).astype(np.float32)
    return np.clip(0.5 - sdf, 0.0, 1.0)


def _alpha(obj: dict, dx, dy, angle, scale: float, style: str):
    """Coverage in [0, 1] of `obj` at pixel-centre offsets dx, dy (pixels, x right, y up)."""
    shape = obj["shape"]
    if shape == "circle":
        return _circle_alpha(dx, dy, obj["radius"] * scale, style)
    if shape == "ring":
        return _ring_alpha(dx, dy, obj["radius"] * scale, obj["inner_radius"] * scale, style)
    if shape == "box":
        w, h = obj["size"]
        return _box_alpha(dx, dy, w * scale / 2, h * scale / 2, angle, style)
    raise KeyError(shape)


def _extent(obj: dict, angles: np.ndarray) -> tuple[float, float]:
    """Half-width and half-height (world units) of a box around the centre that holds the
    object at every angle in `angles` (a thin wall gets a thin patch, not a square one)."""
    if obj["shape"] in ("circle", "ring"):
        return obj["radius"], obj["radius"]
    w, h = obj["size"]
    c, s = np.abs(np.cos(angles)).max(initial=0.0), np.abs(np.sin(angles)).max(initial=0.0)
    return 0.5 * float(c * w + s * h), 0.5 * float(s * w + c * h)


class Canvas:
    """Frames being painted: pixels (3, T, H, W) uint8 on white, plus what each frame has drawn.

    A patch lands on untouched white pixels in most frames; there it is a plain copy of
    precomputed colours. Only where a frame's earlier patches overlap the new one is it blended.
    """

    def __init__(self, frames: int, resolution: int) -> None:
        self.pixels = np.full((3, frames, resolution, resolution), 255, dtype=np.uint8)
        self.dirty: list[tuple[int, int, int, int] | None] = [None] * frames  # r0, r1, c0, c1
        self.painted: list[tuple[int, int, int, int, int]] = []  # frame, r0, r1, c0, c1

    def frames(self) -> np.ndarray:
        """(T, H, W, 3) uint8, a view of the planar pixels."""
        return self.pixels.transpose(1, 2, 3, 0)

    def boxes(self) -> np.ndarray:
        """(K, 5) uint16 frame, row0, row1, col0, col1 of every painted patch: outside them,
        everything is white (see `datagen.schema.encode_frames`)."""
        return np.array(self.painted, dtype=np.uint16).reshape(-1, 5)

    def paint(self, colour, alpha: np.ndarray, rows0: np.ndarray, cols0: np.ndarray) -> None:
        """Paint `colour` with coverage `alpha` (T, Bh, Bw) whose top-left pixels are (rows0, cols0)."""
        t, bh, bw = alpha.shape
        h, w = self.pixels.shape[2:]
        colour = np.asarray(colour, dtype=np.float32)[:, None, None, None]
        a = alpha[None]  # (1, T, Bh, Bw)
        over_white = np.rint(255.0 + (colour - 255.0) * a).astype(np.uint8)  # (3, T, Bh, Bw)
        for f in range(t):
            r0, c0 = int(rows0[f]), int(cols0[f])
            r1, c1 = min(r0 + bh, h), min(c0 + bw, w)
            rs, cs = max(r0, 0), max(c0, 0)
            if rs >= r1 or cs >= c1:
                continue  # the patch is off-screen in this frame
            target = self.pixels[:, f, rs:r1, cs:c1]
            patch = (slice(None), slice(rs - r0, r1 - r0), slice(cs - c0, c1 - c0))
            self.painted.append((f, rs, r1, cs, c1))
            d = self.dirty[f]
            if d is None or d[0] >= r1 or rs >= d[1] or d[2] >= c1 or cs >= d[3]:
                target[...] = over_white[:, f][patch]
                self.dirty[f] = (
                    (rs, r1, cs, c1)
                    if d is None
                    else (min(d[0], rs), max(d[1], r1), min(d[2], cs), max(d[3], c1))
                )
            else:
                old = target.astype(np.float32)
                target[...] = np.rint(old + (colour[:, 0] - old) * a[:, f][patch]).astype(np.uint8)
                self.dirty[f] = (min(d[0], rs), max(d[1], r1), min(d[2], cs), max(d[3], c1))


# Shapes drawn elsewhere (e.g. `polygon`, `compound` in datagen.render_shapes) register here:
# drawer(canvas: Canvas, obj, centres_uv (T, 2), angles (T,), scale, style) -> None; a drawer
# computes coverage patches (see `_draw`) and calls `canvas.paint`.
DRAWERS: dict[str, Callable[..., None]] = {}


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


def _draw(
    canvas: Canvas, obj: dict, uv: np.ndarray, angles: np.ndarray, scale: float, style: str
) -> None:
    """Paint one circle / ring / box over all frames."""
    ex, ey = _extent(obj, angles)
    rows0, cols0, dx, dy = patch_offsets(uv, ex * scale, ey * scale)
    a = _alpha(obj, dx, dy, angles.astype(np.float32)[:, None, None], scale, style)
    a = np.broadcast_to(a, (len(uv), dy.shape[1], dx.shape[2]))
    canvas.paint(obj["colour"], a, rows0, cols0)


def render(states: States, resolution: int, world_size: float, style: str = "aa") -> np.ndarray:
    """Frames (T, H, W, 3) uint8 RGB on white, objects painted in order (later ones on top).

    The returned array is a view of a channel-planar (3, T, H, W) buffer, which is what
    `datagen.schema.encode_frames` stores; `np.ascontiguousarray` it if a consumer needs
    (T, H, W, 3) memory order.
    """
    return draw(states, resolution, world_size, style).frames()


def draw(states: States, resolution: int, world_size: float, style: str = "aa") -> Canvas:
    """Paint every object; the `Canvas` also knows each frame's painted box (for the encoder)."""
    if style not in STYLES:
        raise ValueError(f"unknown render style '{style}': use one of {STYLES}")
    canvas = Canvas(states.positions.shape[0], resolution)
    scale = resolution / world_size  # pixels per world unit
    for i, obj in enumerate(states.objects):
        uv = world_to_pixel(states.positions[:, i], world_size, resolution)
        if obj["shape"] in ("circle", "ring", "box"):
            _draw(canvas, obj, uv, states.angles[:, i], scale, style)
        else:
            if obj["shape"] not in DRAWERS:
                import datagen.render_shapes  # noqa: F401  (registers polygon / compound drawers)
            DRAWERS[obj["shape"]](canvas, obj, uv, states.angles[:, i], scale, style)
    return canvas
