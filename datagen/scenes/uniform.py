"""Uniform linear motion: one object moving horizontally, no gravity, nothing to hit.

Parameters: `v` (speed, world units/s) and `r` (radius, or half-side of a square). Options:
`shape` (circle | box | ring), `colour` ([r, g, b]), `flip` (move left instead of right: the
mirror image of the rightward video), `ring_ratio` (inner / outer radius of a ring).
The start is placed so the centre stays in view for at least `min_frames_in_view` frames when the
speed allows it (24 of 32 frames for every ID speed).
"""

from __future__ import annotations

import numpy as np

from datagen import physics
from datagen.sampling import SceneSpec, params_at
from datagen.scenes import States

RANGES = ("v", "r")  # the parameters drawn from the config's `ranges`
MARGIN = 0.5  # the start of the centre's span, from the left wall


def sample_params(spec: SceneSpec, index: int, rng: np.random.Generator) -> dict:
    """v, r from the grid or random draw; x0 uniform over the starts that keep the ball in view."""
    p = params_at(spec, index, rng)
    span = (spec.option("min_frames_in_view", 24) - 1) * spec.frame_dt * p["v"]
    x_hi = max(MARGIN, spec.world_size - MARGIN - span)
    p["x0"] = float(rng.uniform(MARGIN, x_hi))
    p["y0"] = float(spec.option("y0", spec.world_size / 2))
    return p


def world(params: dict, spec: SceneSpec) -> physics.World:
    """Free flight. With no force and no contact one step per frame is exact, so we take one."""
    obj = physics.shape_object(
        spec.option("shape", "circle"),
        spec.option("colour", physics.RED),
        params["r"],
        ring_ratio=spec.option("ring_ratio", 0.6),
    )
    x0, v = params["x0"], params["v"]
    if spec.option("flip", False):
        x0, v = spec.world_size - x0, -v
    return physics.World([obj], [((x0, params["y0"]), (v, 0.0))], substeps=1)


def simulate(params: dict, spec: SceneSpec) -> States:
    """The video's states (generate batches `world`s instead)."""
    return physics.simulate([world(params, spec)], spec.frames, spec.frame_dt)[0]
