"""Composition scenes (SPEC "Scenarios C"): events seen apart in training, together in test.

`spatial_composition`: a blue square on the upper row and a red ball on the lower row, with a
black wall at the right end of the lower row only. Parameters `v_square`, `v_ball` (speeds to the
right; a range of [[0, 0]] keeps an object still), `s` (half-side of the square), `r` (radius of
the ball). Training: square moving + ball still; ball bouncing off the wall + square still.
Test: both moving.

`temporal_composition`: red ball 1 moving right, optionally blue ball 2, and optionally a black
wall at the right edge. Options `balls` (1 | 2) and `wall` (bool); parameters `v1`, `r1` (and
`v2`, `r2` with two balls). Training: two balls colliding head on (no wall); one ball bouncing
off the wall. Test (two balls and the wall): the blue ball moves right, bounces off the wall,
then meets the red ball head on, so both events follow each other in one video.

Every contact is perfectly elastic (see `datagen.physics`).
"""

from __future__ import annotations

import numpy as np

from datagen import physics
from datagen.config import DatagenConfigError
from datagen.sampling import SceneSpec, params_at
from datagen.scenes import States

# The parameters drawn from the config's `ranges` (spatial: the first four, temporal: the rest).
RANGES = ("v_square", "v_ball", "s", "r", "v1", "r1", "v2", "r2")
CONDITION_FRAMES = 0  # no in-view promise (the generator checks none)
# Scene protocol (datagen.scenes.Scene): counted by the sampler, every parameter combination
# stageable, drawn by the shared renderer.
count = feasible = render = None

WALL = 0.3  # wall thickness, world units


def _wall(spec: SceneSpec, y_lo: float, y_hi: float) -> dict:
    """A static black wall at the right edge, spanning y in [y_lo, y_hi]."""
    return {
        "type": "wall",
        "shape": "box",
        "colour": physics.BLACK,
        "size": [WALL, y_hi - y_lo],
        "dynamic": False,
        "centre": [spec.world_size - WALL / 2, (y_lo + y_hi) / 2],
    }


def _bounce_start(rng, x_wall: float, r: float, v: float, t_range) -> float:
    """Start x of a ball moving right at v that touches the wall at a time in `t_range`."""
    return x_wall - r - v * float(rng.uniform(*t_range))


def validate(spec: SceneSpec) -> None:
    """Each scene needs its own parameters."""
    if spec.scene == "spatial_composition":
        need = {"v_square", "v_ball", "s", "r"}
    else:
        need = {"v1", "r1"} | ({"v2", "r2"} if spec.option("balls", 2) == 2 else set())
    missing = sorted(need - set(spec.ranges))
    if missing:
        raise DatagenConfigError(
            f"scene {spec.scene} needs ranges for {missing} (options: {spec.options})"
        )


def sample_params(spec: SceneSpec, index: int, rng: np.random.Generator) -> dict:
    """Ranged parameters, then starts that put each event inside the 32 frames."""
    p = params_at(spec, index, rng)
    w = spec.world_size
    if spec.scene == "spatial_composition":
        p["square_x0"] = (
            p["s"] + float(rng.uniform(0.3, 1.3)) if p["v_square"] else float(rng.uniform(2.0, 4.0))
        )
        p["ball_x0"] = (
            _bounce_start(rng, w - WALL, p["r"], p["v_ball"], (0.8, 2.3))
            if p["v_ball"]
            else float(rng.uniform(2.0, w - WALL - p["r"] - 1.0))
        )
        return p
    if spec.option("balls", 2) == 1:
        p["x1"] = _bounce_start(rng, w - WALL, p["r1"], p["v1"], (0.8, 2.3))
        return p
    if spec.option("wall", False):
        # Blue bounces off the wall at t_w, then meets red at t_c; t_c >= 2 t_w keeps red
        # to the left of blue at the start, t_c > t_w keeps red from catching blue first.
        t_w = float(rng.uniform(0.5, 1.0))
        t_c = float(rng.uniform(max(2 * t_w, t_w + 0.5), 2.3))
        x_bounce = w - WALL - p["r2"]  # blue's centre when it touches the wall
        p["x2"] = x_bounce - p["v2"] * t_w
        p["x1"] = x_bounce - p["r2"] - p["r1"] - p["v2"] * (t_c - t_w) - p["v1"] * t_c
        p["t_wall"], p["t_contact"] = t_w, t_c
        return p
    t_c = float(rng.uniform(0.8, 2.3))
    x_c = w / 2 + float(rng.uniform(-1.0, 1.0))
    p["t_contact"] = t_c
    p["x1"] = x_c - p["r1"] - p["v1"] * t_c
    p["x2"] = x_c + p["r2"] + p["v2"] * t_c
    return p


def world(params: dict, spec: SceneSpec) -> physics.World:
    """The world of the scene's variant, stepped at 0.01 s."""
    w = spec.world_size
    starts, objects = [], []

    def add(obj: dict, pos, vel) -> None:
        starts.append((pos, vel))
        objects.append(obj)

    def add_wall(obj: dict) -> None:
        starts.append((tuple(obj["centre"]), None))
        objects.append({k: v for k, v in obj.items() if k != "centre"})

    if spec.scene == "spatial_composition":
        add(
            physics.shape_object("box", physics.BLUE, params["s"]),
            (params["square_x0"], 0.75 * w),
            (params["v_square"], 0.0),
        )
        add(
            physics.shape_object("circle", physics.RED, params["r"]),
            (params["ball_x0"], 0.25 * w),
            (params["v_ball"], 0.0),
        )
        add_wall(_wall(spec, 0.0, 0.5 * w))
    else:
        y = w / 2
        add(
            physics.shape_object("circle", physics.RED, params["r1"]),
            (params["x1"], y),
            (params["v1"], 0.0),
        )
        if spec.option("balls", 2) == 2:
            v2 = params["v2"] if spec.option("wall", False) else -params["v2"]  # see sample_params
            add(
                physics.shape_object("circle", physics.BLUE, params["r2"]),
                (params["x2"], y),
                (v2, 0.0),
            )
        if spec.option("wall", spec.option("balls", 2) == 1):
            add_wall(_wall(spec, 0.0, w))
    return physics.World(objects, starts, substeps=spec.substeps)


def simulate(params: dict, spec: SceneSpec) -> States:
    """The video's states (generate batches `world`s instead)."""
    return physics.simulate([world(params, spec)], spec.frames, spec.frame_dt)[0]
