"""Condition frames show every ball: the kinematic scenes start every moving object fully in view
(the model is given the first 3 frames: a hidden ball's speed is unknowable), checked on every
video of every shipped eval set, and a dataset that breaks it is an error."""

from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np
import pytest

from datagen import physics
from datagen.config import DatagenConfig, DatagenConfigError
from datagen.generate import make_plan, make_samples
from datagen.render import first_hidden
from phyworld.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "data"
KINEMATIC = ("uniform", "collision", "parabola")


def plan_of(path: Path, *overrides: str):
    return make_plan(load_config(DatagenConfig, [str(path), "output=unused", *overrides]))


def eval_configs() -> list[Path]:
    """Every shipped eval set of the kinematic scenes (the analysis sets' included)."""
    out = []
    for path in sorted(CONFIGS.glob("*.yaml")):
        cfg = load_config(DatagenConfig, [str(path)]) if "_base" not in path.stem else None
        if cfg is not None and cfg.split == "eval" and cfg.scene in KINEMATIC:
            out.append(path)
    return out


@pytest.mark.parametrize("path", eval_configs(), ids=lambda p: p.stem)
def test_every_eval_video_shows_its_balls_in_the_condition_frames(path):
    # All of the set's videos, their condition frames simulated (not rendered): 0% with a ball
    # cut by the frame edge.
    plan = plan_of(path)
    starts = plan.starts.tolist()
    worlds = []
    for index in range(plan.count):
        g = bisect.bisect_right(starts, index) - 1
        spec = plan.specs[g]
        rng = np.random.default_rng([plan.cfg.seed, index])
        worlds.append(
            plan.scene.world(plan.scene.sample_params(spec, index - starts[g], rng), spec)
        )
    states = physics.simulate(worlds, 3, plan.cfg.frame_dt)
    hidden = [i for i, st in enumerate(states) if first_hidden(st, plan.cfg.world_size, 3)]
    assert hidden == [], f"{path.stem}: {len(hidden)} of {plan.count} videos hide a ball"
    assert plan.scene.CONDITION_FRAMES == 3


def test_a_dataset_that_hides_a_ball_is_an_error_naming_set_sample_and_fix(monkeypatch):
    from datagen.scenes import uniform

    place = uniform.sample_params

    def off_screen(spec, index, rng):
        p = place(spec, index, rng)
        if index == 5:
            p["x0"] = -0.5  # the ball enters from the left wall
        return p

    monkeypatch.setattr(uniform, "sample_params", off_screen)
    plan = plan_of(CONFIGS / "uniform_eval_id.yaml")
    make_samples(plan, range(5))
    with pytest.raises(DatagenConfigError) as err:
        make_samples(plan, range(8))
    message = str(err.value)
    assert "dataset 'unused'" in message and "sample 5" in message and '"x0":-0.5' in message
    assert "condition frame 0" in message and "fix the scene's sample_params" in message


def test_first_hidden_names_the_frame_and_object():
    ball = physics.shape_object("circle", physics.RED, 1.0)
    wall = {"type": "wall", "shape": "box", "size": [0.3, 10.0], "colour": [0, 0, 0]}
    wall["dynamic"] = False
    x = np.array([1.2, 1.1, 0.99, 0.5], np.float32)  # the ball touches the left border at frame 2
    pos = np.stack([np.stack([x, np.full(4, 5.0, np.float32)], -1), np.full((4, 2), 9.9)], 1)
    st = physics.States(pos.astype(np.float32), np.zeros_like(pos), np.zeros((4, 2)), [ball, wall])
    assert first_hidden(st, 10.0, 2) is None  # the static wall may touch the border
    assert first_hidden(st, 10.0, 3) == (2, 0)
