"""Perfectly elastic collision: two balls on one horizontal line moving towards each other.

Parameters: `v1`, `v2` (speeds of the red left ball moving right and the blue right ball moving
left) and `r1`, `r2` (radii). The contact happens at time t_c = U(`t_contact` = [0.8, 2.3] s),
i.e. at least 8 frames before and 8 after it, at x_c = world/2 + U(-1, 1).
"""

from __future__ import annotations

import numpy as np

from datagen import physics
from datagen.sampling import SceneSpec, params_at
from datagen.scenes import States

RANGES = ("v1", "v2", "r1", "r2")  # the parameters drawn from the config's `ranges`


def sample_params(spec: SceneSpec, index: int, rng: np.random.Generator) -> dict:
    """v1, v2, r1, r2, then the contact time and place, which fix the starts."""
    p = params_at(spec, index, rng)
    lo, hi = spec.option("t_contact", [0.8, 2.3])
    t_c = float(rng.uniform(lo, hi))
    x_c = spec.world_size / 2 + float(rng.uniform(-1.0, 1.0))
    p["t_contact"] = t_c
    p["x1"] = x_c - p["r1"] - p["v1"] * t_c
    p["x2"] = x_c + p["r2"] + p["v2"] * t_c
    p["y0"] = float(spec.option("y0", spec.world_size / 2))
    return p


def world(params: dict, spec: SceneSpec) -> physics.World:
    """Two discs, head on; pymunk resolves the contact elastically at any speed."""
    balls = [
        physics.shape_object("circle", spec.option("colour1", physics.RED), params["r1"]),
        physics.shape_object("circle", spec.option("colour2", physics.BLUE), params["r2"]),
    ]
    y = params["y0"]
    starts = [((params["x1"], y), (params["v1"], 0.0)), ((params["x2"], y), (-params["v2"], 0.0))]
    return physics.World(balls, starts, substeps=spec.substeps)


def simulate(params: dict, spec: SceneSpec) -> States:
    """The video's states (generate batches `world`s instead)."""
    return physics.simulate([world(params, spec)], spec.frames, spec.frame_dt)[0]
