"""The paper's velocity metric (`metric=paper`) on hand-computed cases, its filters, the eval
loader's check that condition frames show every ball, and the metric switch of the eval job."""

from __future__ import annotations

import numpy as np
import pytest
from evalkit import make_samples
from test_eval_job import eval_args, eval_sets, write_checkpoint  # noqa: F401  (fixture)

from eval.__main__ import run as eval_main
from eval.parse import BallStates
from eval.samples import EvalSetError, check_condition_in_view, kinematic_truth
from eval.velocity import paper_velocity_errors, velocity_errors
from eval.watch import read_metrics


def _score(parsed_x, true_x, radius, scenario, parsed_y=None, true_v=None):
    """Both metrics of one video: x (T, N) parsed and true positions, y = 5 unless given."""
    t, n = true_x.shape
    true = np.stack([true_x, np.full((t, n), 5.0)], -1)[None]
    y = np.full((t, n), 5.0) if parsed_y is None else parsed_y
    parsed = BallStates(np.stack([parsed_x, y], -1)[None], np.ones((1, t, n)))
    velocity = np.gradient(true, axis=1) / 0.1 if true_v is None else true_v[None]
    kw = dict(world_size=10.0, frame_dt=0.1, cond_frames=3, scenario=scenario)
    args = (parsed, true, velocity, np.asarray([radius], np.float64))
    return float(paper_velocity_errors(*args, **kw)[0]), float(
        velocity_errors(*args, **kw)["vel_error"][0]
    )


def test_paper_metric_is_the_error_of_the_mean_x_velocity():
    # A ball at v = 2 along x; the parser reads frames 3, 4, 5 at x = 3.0, 3.25, 3.40 (steps of
    # 2.5 and 1.5 units/s) and y off by 0.1 at frame 4. Paper: |mean(2.5, 1.5) - 2| = 0 (x only,
    # the mean first); per step: mean(|(0.5, 1)|, |(-0.5, -1)|) = sqrt(1.25).
    true_x = (2.4 + 0.2 * np.arange(6))[:, None]
    parsed_x = true_x.copy()
    parsed_x[3:, 0] = [3.0, 3.25, 3.40]
    parsed_y = np.full((6, 1), 5.0)
    parsed_y[4] = 5.1
    true_v = np.zeros((6, 1, 2))
    true_v[..., 0] = 2.0
    paper, step = _score(parsed_x, true_x, [1.0], "uniform", parsed_y, true_v)
    assert paper == pytest.approx(0.0, abs=1e-12)
    assert step == pytest.approx(np.sqrt(1.25), rel=1e-9)
    # 3.0, 3.25, 3.46: steps 2.5, 2.1 -> |2.3 - 2| = 0.3
    parsed_x[5, 0] = 3.46
    assert _score(parsed_x, true_x, [1.0], "uniform", None, true_v)[0] == pytest.approx(0.3)


def _collision():
    """Red at 1 unit/s hits blue at rest between frames 4 and 5 (equal masses: they swap)."""
    t = np.arange(10) * 0.1
    red = np.where(t <= 0.45, 3.0 + t, 3.45)
    blue = np.where(t <= 0.45, 5.0, 5.0 + (t - 0.45))
    true_v = np.zeros((10, 2, 2))
    true_v[:, 0, 0] = np.where(t < 0.45, 1.0, 0.0)
    true_v[:, 1, 0] = np.where(t < 0.45, 0.0, 1.0)
    return np.stack([red, blue], -1), true_v


def test_paper_metric_of_a_collision_is_post_contact_per_ball_then_averaged():
    # Post-contact steps: frames 5 -> 9 (frame 5 is the first with the new velocities).
    true_x, true_v = _collision()
    parsed_x = true_x.copy()
    parsed_x[9, 1] += 0.008  # blue 0.008 too far at the end: its mean post speed +0.02
    parsed_x[5:, 0] += [0.0, 0.01, 0.01, 0.01, 0.01]  # red: +0.1 for one step, mean +0.025
    parsed_x[2, 0] += 0.5  # the condition and the pre-contact frames do not count
    paper, _ = _score(parsed_x, true_x, [0.6, 0.6], "collision", true_v=true_v)
    assert paper == pytest.approx((0.025 + 0.02) / 2)
    # A red ball the parser loses is read at x = 0, where the authors' parser puts it. The mean
    # of the differences telescopes to (last - first) / time: a loss in the middle cancels out,
    # one in the last frame is a large error.
    parsed_x[8, 0] = np.nan
    assert _score(parsed_x, true_x, [0.6, 0.6], "collision", true_v=true_v)[0] == pytest.approx(
        paper
    )
    parsed_x[8, 0], parsed_x[9, 0] = true_x[8, 0], np.nan
    assert _score(parsed_x, true_x, [0.6, 0.6], "collision", true_v=true_v)[0] > 4


@pytest.mark.parametrize(
    ("scenario", "radii", "scored"),
    [
        ("uniform", [0.6], True),
        ("uniform", [0.59], False),
        ("parabola", [0.55], False),
        ("collision", [0.51, 1.2], True),
        ("collision", [1.2, 0.5], False),
    ],
)
def test_paper_metric_drops_the_small_balls_the_authors_drop(scenario, radii, scored):
    if scenario == "collision":
        true_x, true_v = _collision()
    else:
        true_x, true_v = (2.0 + 0.2 * np.arange(8))[:, None], None
    paper, step = _score(true_x, true_x, radii, scenario, true_v=true_v)
    assert np.isfinite(paper) == scored and np.isfinite(step)  # the per-step metric keeps them


def test_eval_loader_refuses_a_set_whose_condition_frames_hide_a_ball():
    samples = make_samples("collision_eval_id.yaml", 4)
    truth = kinematic_truth(samples, "c")
    check_condition_in_view(truth, samples, "c", 3)  # the shipped scenes show every ball
    truth.position[2, 1, 1, 0] = 10.5  # blue half out of the frame at condition frame 1
    with pytest.raises(EvalSetError) as err:
        check_condition_in_view(truth, samples, "collision_id", 3)
    message = str(err.value)
    assert "eval set 'collision_id'" in message and samples[2]["id"] in message
    assert "regenerate the set" in message and "python -m datagen" in message
    truth.position[2, 3:, 1, 0] = 10.5  # after the condition frames it may leave: not checked
    truth.position[2, 1, 1, 0] = 9.0
    check_condition_in_view(truth, samples, "collision_id", 3)


def test_eval_job_headline_follows_the_metric(tmp_path, eval_sets):  # noqa: F811
    run = tmp_path / "tiny"
    write_checkpoint(run, 10)
    assert eval_main(eval_args(run, eval_sets, "metric=paper")) == 0
    for r in read_metrics(run):
        assert r["metric"] == "paper"
        assert r["vel_error"] == r["vel_error_paper.threshold.model"]
        assert r["vel_error_gt"] == r["vel_error_paper.threshold.gt"]
        assert r["vel_error.threshold.gt"] != r["vel_error_gt"]  # the per-step one, beside it
    from phyworld.config import ConfigError

    with pytest.raises(ConfigError, match=r"set metric to one of step \| paper"):
        eval_main(eval_args(run, eval_sets, "metric=l2"))
