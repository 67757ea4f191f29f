"""The ball parsers and the velocity error, on videos rendered by datagen from known states."""

from __future__ import annotations

import numpy as np
import pytest
from evalkit import make_samples, stack

from eval.parse import parse_balls
from eval.samples import EvalSetError, kinematic_truth
from eval.velocity import collision_frame, finite_difference, velocity_errors
from phyworld.data.pixels import to_uint8


def _errors(samples, method, parsed=None, **kw):
    truth = kinematic_truth(samples, "test")
    if parsed is None:
        parsed = parse_balls(
            stack(samples), truth.world_size, method=method, colours=truth.colours, **kw
        )
    return velocity_errors(
        parsed,
        truth.position,
        truth.velocity,
        truth.radius,
        world_size=truth.world_size,
        frame_dt=truth.frame_dt,
        cond_frames=3,
        scenario=truth.scenario,
    )


@pytest.fixture(scope="module")
def uniform_aa():
    return make_samples("uniform_eval_id.yaml", 24)


@pytest.fixture(scope="module")
def uniform_paper():
    return make_samples("uniform_eval_id.yaml", 24, "render=paper")


def test_alpha_parser_recovers_states_of_antialiased_videos(uniform_aa):
    truth = kinematic_truth(uniform_aa, "u")
    parsed = parse_balls(stack(uniform_aa), truth.world_size, method="alpha", colours=truth.colours)
    view = slice(3, 10)  # frames where every ball is fully in view
    pos_err = np.linalg.norm(parsed.position - truth.position, axis=-1)[:, view]
    assert pos_err.max() < 0.01  # world units; a pixel is 0.078
    assert np.abs(parsed.radius[:, view] - truth.radius[:, None]).max() < 0.01


def test_floors_of_both_parsers_and_renders(uniform_aa, uniform_paper):
    # The paper's parser on the paper's rendering: ~0.05 per step, the floor the authors' code
    # gives at 128 px (SPEC); the sub-pixel parser on exact-area discs is ~100x lower.
    paper = np.nanmean(_errors(uniform_paper, "threshold")["vel_error"])
    subpixel = np.nanmean(_errors(uniform_aa, "alpha")["vel_error"])
    assert 0.02 < paper < 0.07
    assert subpixel < 0.002
    assert subpixel < paper / 20


def test_velocity_error_measures_a_wrong_speed(uniform_aa):
    truth = kinematic_truth(uniform_aa, "u")
    parsed = parse_balls(stack(uniform_aa), truth.world_size, method="alpha", colours=truth.colours)
    # A model that moves the ball 10% slower than the truth after the condition frames.
    t = np.arange(truth.position.shape[1])[None, :, None]
    v = truth.velocity[:, :1, :, 0]
    parsed.position[..., 0] -= 0.1 * v * np.maximum(t - 2, 0) * truth.frame_dt
    err = _errors(uniform_aa, "alpha", parsed=parsed)["vel_error"]
    np.testing.assert_allclose(err, 0.1 * v[:, 0, 0], rtol=0.1, atol=0.01)


def test_a_vanished_ball_is_counted_missing_not_scored(uniform_aa):
    frames = stack(uniform_aa).copy()
    frames[:, 8:] = 255  # the ball vanishes from frame 8 on
    truth = kinematic_truth(uniform_aa, "u")
    parsed = parse_balls(frames, truth.world_size, method="threshold", colours=truth.colours)
    assert np.isnan(parsed.position[:, 8:]).all() and (parsed.radius[:, 8:] == 0).all()
    out = _errors(uniform_aa, "threshold", parsed=parsed)
    assert (out["missing"] > 0.5).all()
    assert np.isfinite(out["vel_error"]).all()


def test_collision_pre_post_momentum_and_energy():
    samples = make_samples("collision_eval_id.yaml", 12)
    gt = _errors(samples, "alpha")
    for key in ("vel_error_pre", "vel_error_post", "momentum_error", "energy_error"):
        assert np.isfinite(gt[key]).all(), key
    assert np.nanmean(gt["vel_error_post"]) < 0.02
    # A model that merges the balls into a perfectly inelastic collision keeps momentum but
    # loses energy: the energy error must grow, the momentum error stay near the floor.
    truth = kinematic_truth(samples, "c")
    parsed = parse_balls(stack(samples), truth.world_size, method="alpha", colours=truth.colours)
    t_c = collision_frame(truth.velocity)
    m = np.pi * truth.radius**2  # (B, N)
    for b in range(len(samples)):
        v0 = truth.velocity[b, 0, :, 0]
        v_common = (m[b] * v0).sum() / m[b].sum()
        for n in range(2):
            x_c = parsed.position[b, t_c[b] - 1, n, 0]
            steps = np.arange(parsed.position.shape[1] - t_c[b] + 1)
            parsed.position[b, t_c[b] - 1 :, n, 0] = x_c + v_common * steps * truth.frame_dt
    bad = _errors(samples, "alpha", parsed=parsed)
    assert np.nanmean(bad["energy_error"]) > 10 * np.nanmean(gt["energy_error"])
    assert np.nanmean(bad["momentum_error"]) < 0.2
    assert np.nanmean(bad["vel_error_post"]) > 0.5


def test_collision_frame_and_finite_difference():
    vel = np.zeros((2, 6, 2, 2))
    vel[0, :, 0, 0] = [2, 2, 2, -1, -1, -1]
    vel[1, :, 0, 0] = 3.0  # no collision
    np.testing.assert_array_equal(collision_frame(vel), [3, 6])
    pos = np.cumsum(np.ones((1, 4, 1, 2)), axis=1)
    np.testing.assert_allclose(finite_difference(pos, 0.1), 10.0)


def test_eval_set_without_states_is_a_clear_error(uniform_aa):
    broken = [dict(s, positions=np.zeros((0,), np.float32)) for s in uniform_aa[:2]]
    with pytest.raises(EvalSetError, match="no per-frame object states"):
        kinematic_truth(broken, "broken")
    square = [dict(s, objects=[dict(s["objects"][0], shape="box")]) for s in uniform_aa[:2]]
    with pytest.raises(EvalSetError, match="kind=combinatorial"):
        kinematic_truth(square, "squares")


def test_bad_frames_and_parser_names_are_clear_errors():
    with pytest.raises(ValueError, match="uint8 RGB videos"):
        parse_balls(np.zeros((1, 2, 8, 8, 3), np.float32), 10.0)
    with pytest.raises(ValueError, match="unknown parser"):
        parse_balls(np.zeros((1, 2, 8, 8, 3), np.uint8), 10.0, method="magic")


def test_to_uint8_round_trips_training_pixels():
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 4, 3)).astype(np.uint8)
    np.testing.assert_array_equal(to_uint8(x / 127.5 - 1.0), x)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["uniform", "collision", "parabola"])
def test_subpixel_floor_of_antialiased_videos_is_below_0_002(scenario):
    """The per-step GT floor at 128 px, exact-area discs and the sub-pixel parser, on 300 ID
    videos: <= 0.002 (issue 14's goal; ~0.0005 measured; the old clip(r + 0.5 - d) edge gave
    0.0047 / 0.0054 / 0.0036), against the paper's parser on the paper's rendering (~0.05)."""
    from eval.floors import DATA_CONFIGS, floors

    aa = floors(DATA_CONFIGS / f"{scenario}_eval_id.yaml", 300, "render=aa")
    print(f"{scenario} step floor, aa + alpha: {aa['alpha', 'step']:.5f}")
    assert aa["alpha", "step"] <= 0.002
    assert aa["threshold", "step"] > 10 * aa["alpha", "step"]


@pytest.mark.slow
@pytest.mark.parametrize(("scenario", "published"), [("uniform", 0.0099), ("collision", 0.0117)])
def test_paper_mode_reproduces_the_published_gt_floors(scenario, published):
    """render=paper (the authors' pixel positions) + their threshold parser + their metric at
    256 px on 300 ID videos: the paper's GT floor within 10%, almost all of it the v / W bias of
    their scale mismatch; the same metric on our convention is 20x lower."""
    from eval.floors import DATA_CONFIGS, floors

    config = DATA_CONFIGS / f"{scenario}_eval_id.yaml"
    paper = floors(config, 300, "render=paper", "resolution=256")["threshold", "paper"]
    ours = floors(config, 100, "render=aa", "resolution=256")["threshold", "paper"]
    print(f"{scenario} paper-mode GT floor {paper:.4f} (published {published}), ours {ours:.4f}")
    assert abs(paper - published) <= 0.1 * published
    assert ours < paper / 2
