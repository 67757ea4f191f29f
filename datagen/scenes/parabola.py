"""Parabolic motion: one ball thrown horizontally near the top, falling under gravity 2.5.

Parameters: `v` (initial horizontal speed) and `r` (radius). Options: `gravity` (2.5),
`colour`. Starts at x0 = U(0.5, 1.5), y0 = world - r - U(0, 0.5): near the top-left corner.
"""

from __future__ import annotations

import numpy as np

from datagen import physics
from datagen.sampling import SceneSpec, params_at
from datagen.scenes import States

RANGES = ("v", "r")  # the parameters drawn from the config's `ranges`
GRAVITY = 2.5


def sample_params(spec: SceneSpec, index: int, rng: np.random.Generator) -> dict:
    """v, r, then a start near the top-left."""
    p = params_at(spec, index, rng)
    p["x0"] = float(rng.uniform(0.5, 1.5))
    p["y0"] = float(spec.world_size - p["r"] - rng.uniform(0.0, 0.5))
    p["gravity"] = float(spec.option("gravity", GRAVITY))
    return p


def world(params: dict, spec: SceneSpec) -> physics.World:
    """Gravity needs the 0.01 s steps: semi-implicit Euler's error grows with the step."""
    obj = physics.shape_object("circle", spec.option("colour", physics.RED), params["r"])
    start = ((params["x0"], params["y0"]), (params["v"], 0.0))
    return physics.World([obj], [start], params["gravity"], spec.substeps)


def simulate(params: dict, spec: SceneSpec) -> States:
    """The video's states (generate batches `world`s instead)."""
    return physics.simulate([world(params, spec)], spec.frames, spec.frame_dt)[0]
