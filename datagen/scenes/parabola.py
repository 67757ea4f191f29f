"""Parabolic motion: one ball thrown horizontally near the top, falling under gravity 2.5.

Parameters: `v` (initial horizontal speed) and `r` (radius). Options: `gravity` (2.5),
`colour`, `min_frames_in_view` (24). The start is the authors': fully in view at x in
[r, world - 2.4 v - r] (`datagen.sampling.start_in_view`), height y0 = U(8.5 - r, 9.5 - r)
(0.05 world below the top, up to 0.1 world lower).
"""

from __future__ import annotations

import numpy as np

from datagen import physics
from datagen.sampling import MARGIN, SceneSpec, params_at, start_in_view
from datagen.scenes import States

RANGES = ("v", "r")  # the parameters drawn from the config's `ranges`
GRAVITY = 2.5
CONDITION_FRAMES = 3  # the ball is fully in view in the first 3 frames
# Scene protocol (datagen.scenes.Scene): no settings to check, counted by the sampler, every
# parameter combination stageable, drawn by the shared renderer.
validate = count = feasible = render = None


def sample_params(spec: SceneSpec, index: int, rng: np.random.Generator) -> dict:
    """v, r, then a start near the top-left."""
    p = params_at(spec, index, rng)
    top = (1.0 - MARGIN) * spec.world_size - p["r"]
    p["x0"] = start_in_view(rng, p["r"], p["v"], spec)
    p["y0"] = float(rng.uniform(top - 2 * MARGIN * spec.world_size, top))
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
