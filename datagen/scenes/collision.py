"""Perfectly elastic collision: two balls on one horizontal line moving towards each other.

Parameters: `v1`, `v2` (speeds of the red left ball moving right and the blue right ball moving
left) and `r1`, `r2` (radii). The placement is the authors': both balls fully in view at frame 0,
contact at least 8 frames after the start and at least 8 before the end. Their centres start
`dist` apart, dist ~ U(0.8 (v1 + v2) + r1 + r2, min(2.4 (v1 + v2) + r1 + r2, world - r1 - r2))
(contact between frames 8 and 24), and when one radius is more than twice the other the contact
comes early, dist <= 1.25 x its least value; the red ball starts at x1 ~ U(r1, world - r2 - dist),
except that a blue ball more than twice the red one starts within 0.05 world of the right wall.
The height is U(max(r1, r2) + 0.5, 9.5 - max(r1, r2)).

Combinations with no room for that, 0.8 (v1 + v2) + 2 (r1 + r2) > world (fast and large balls),
are not sampled (`feasible`): the authors' generator drops them too.
"""

from __future__ import annotations

import numpy as np

from datagen import physics
from datagen.sampling import MARGIN, SceneSpec, height_in_view, params_at
from datagen.scenes import States

RANGES = ("v1", "v2", "r1", "r2")  # the parameters drawn from the config's `ranges`
MIN_PRE_FRAMES = 8  # frames before the contact ...
MIN_POST_FRAMES = 8  # ... and after it
CONDITION_FRAMES = 3  # both balls are fully in view in the first 3 frames
# Scene protocol (datagen.scenes.Scene): no settings to check, counted by the sampler, drawn by
# the shared renderer.
validate = count = render = None


def feasible(spec: SceneSpec, p: dict):
    """0.8 (v1 + v2) + 2 (r1 + r2) <= world: both balls in view at the start, 8 frames apart."""
    need = MIN_PRE_FRAMES * spec.frame_dt * (p["v1"] + p["v2"]) + 2 * (p["r1"] + p["r2"])
    return need <= spec.world_size + 1e-9


def sample_params(spec: SceneSpec, index: int, rng: np.random.Generator) -> dict:
    """v1, v2, r1, r2, then the distance between the centres and the red ball's start."""
    p = params_at(spec, index, rng)
    if not feasible(spec, p):
        raise ValueError(f"collision {p} has no room for {MIN_PRE_FRAMES} frames before contact")
    w, dt = spec.world_size, spec.frame_dt
    r1, r2, v, r = p["r1"], p["r2"], p["v1"] + p["v2"], p["r1"] + p["r2"]
    d_min = MIN_PRE_FRAMES * dt * v + r
    d_max = (spec.frames - MIN_POST_FRAMES) * dt * v + r
    if r1 > 2 * r2 or r2 > 2 * r1:  # the small ball needs room after the contact
        d_max = 1.25 * d_min
    dist = float(rng.uniform(d_min, max(min(d_max, w - r), d_min)))  # (equal at the boundary)
    x1_hi = max(w - r2 - dist, r1)  # (equal at the boundary, up to rounding)
    x1_lo = x1_hi - MARGIN * w if r2 > 2 * r1 else r1
    p["x1"] = max(float(rng.uniform(x1_lo, x1_hi)), r1)
    p["x2"] = p["x1"] + dist
    p["y0"] = height_in_view(rng, max(r1, r2), spec)
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
