"""Pixel conventions: values, and where a pixel lies in the world.

Values: frames are uint8 RGB in [0, 255]; models see floats in [-1, 1]. `to_unit` and `to_uint8`
are the one conversion each way, for numpy arrays and torch tensors alike (any layout).

Geometry (ARCHITECTURE.md): the image is `resolution` x `resolution` pixels over a square world
`world_size` wide; world y points up, image rows go down. Pixel (i, j) (column i, row j) covers
world x in [i*s, (i+1)*s), y in [world - (j+1)*s, world - j*s) with s = world_size / resolution.
Continuous pixel coordinates (u, v) put the *edge* of pixel i at u = i and its centre at
u = i + 0.5. datagen renders with `world_to_pixel`, eval parses back with `index_to_world`.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Video = TypeVar("Video", np.ndarray, torch.Tensor)
IN_FRAME_TOL = 1e-5  # world units: ~10x the float32 rounding of a position below 100


def to_unit(video: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] -> float32 in [-1, 1], same shape and device."""
    return video.float().mul_(1 / 127.5).sub_(1.0)  # a multiply: cheaper than a divide


def to_uint8(video: Video) -> Video:
    """Floats in [-1, 1] -> uint8 in [0, 255], clamped and rounded half to even (numpy or torch)."""
    if isinstance(video, torch.Tensor):
        return (video.float().clamp(-1, 1).add(1.0).mul_(127.5)).round_().to(torch.uint8)
    return np.clip(np.rint((np.asarray(video, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


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


def in_frame(xy: np.ndarray, half_extent: np.ndarray, world_size: float) -> np.ndarray:
    """(...) bool: the object centred at `xy` (..., 2), half-extent `half_extent` (broadcast
    against xy: (..., 1) for a radius, (..., 2) for half-width and half-height) world units, lies
    fully inside the square world (the frame), up to the float32 rounding of stored states
    (`IN_FRAME_TOL`: a ball placed against the border is in)."""
    e = np.asarray(half_extent, dtype=np.float64) - IN_FRAME_TOL
    return np.all((xy >= e) & (xy <= world_size - e), axis=-1)
