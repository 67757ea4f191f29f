"""Uniform linear motion: one object moving horizontally, no gravity, nothing to hit.

Parameters: `v` (speed, world units/s) and `r` (radius, or half-side of a square). Options:
`shape` (circle | box | ring), `colour` ([r, g, b]), `flip` (move left instead of right: the
mirror image of the rightward video), `ring_ratio` (inner / outer radius of a ring),
`min_frames_in_view` (24).
The start is the authors' (`datagen.sampling.start_in_view`, `height_in_view`): fully in view at
x in [r, world - 2.4 v - r] (in view for 24 frames), at a random height in [r + 0.5, 9.5 - r].
"""

from __future__ import annotations

import numpy as np

from datagen import physics
from datagen.sampling import SceneSpec, height_in_view, params_at, start_in_view
from datagen.scenes import States

RANGES = ("v", "r")  # the parameters drawn from the config's `ranges`
# Every object is fully in view in the first 3 frames (the model's condition frames).
CONDITION_FRAMES = 3
# Scene protocol (datagen.scenes.Scene): no settings to check, counted by the sampler, every
# parameter combination stageable, drawn by the shared renderer.
validate = count = feasible = render = None


def sample_params(spec: SceneSpec, index: int, rng: np.random.Generator) -> dict:
    """v, r from the grid or random draw; then the start x0 and the height y0."""
    p = params_at(spec, index, rng)
    p["x0"] = start_in_view(rng, p["r"], p["v"], spec)
    p["y0"] = height_in_view(rng, p["r"], spec)
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
