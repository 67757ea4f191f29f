"""Velocity error of parsed videos against the simulator's states: two metrics.

`step` (`velocity_errors`, the project's): velocity is the finite difference of parsed centres between consecutive frames divided by the
frame time (0.1 s). It is compared with the same finite difference of the true centres, so a
parabola's error is not swamped by the g dt / 2 offset between a difference and the instantaneous
velocity. A step t (frames t -> t+1) is scored when

- t >= cond_frames (the condition frames are given, not predicted),
- every scored ball is fully in view at t and t+1 (true centre at least r from each border),
- for collision: post-collision steps for the headline error (both frames after the first frame
  whose true velocity differs from the initial one); pre-collision steps are reported separately.

Error of a video = mean over balls and scored steps of |v_parsed - v_true| (Euclidean norm), over
the steps where the parsed ball was found; `missing` is the fraction of scored steps where it was
not (a vanished ball is a failure the error alone would hide). For collision also the momentum and
kinetic-energy errors of the pair (mass = density x area = pi r^2, parsed radius for the parsed
state), post-collision.

`paper` (`paper_velocity_errors`, the number the paper's tables report: the authors'
`vel_error` / `post_vel_error`): per video and x only, |mean over the scored steps of the parsed
v_x - v0| with v0 the true initial v_x (uniform, parabola); for collision, over the
post-collision steps, |mean parsed v_x - mean true v_x| per ball, averaged over the two balls.
As the authors: videos with a radius < 0.6 (uniform, parabola) or <= 0.5 (collision) are not
scored (NaN), and a ball the parser does not find is read at x = world (x = 0 for collision's
red ball), where their parser puts it. The mean of consecutive differences telescopes to
(x_last - x_first) / duration, so this metric's noise floor is far below the per-step one; what
it does not forgive is a scale error (docs/eval.md: the paper's GT floors).
"""

from __future__ import annotations

import numpy as np

from eval.parse import BallStates
from phyworld.data.pixels import in_frame

COLLISION_TOL = 1e-3  # world units / s: a true velocity change above this marks the collision
# The authors' eval keeps videos whose every radius is >= 0.6 (uniform, parabola) or > 0.5
# (collision): smaller balls "disappear" in their parser.
PAPER_MIN_RADIUS = {"uniform": (0.6, True), "parabola": (0.6, True), "collision": (0.5, False)}


def finite_difference(position: np.ndarray, frame_dt: float) -> np.ndarray:
    """(B, T, N, 2) positions -> (B, T-1, N, 2) velocities between consecutive frames."""
    return np.diff(position, axis=1) / frame_dt


def in_view(position: np.ndarray, radius: np.ndarray, world_size: float) -> np.ndarray:
    """(B, T, N) bool: the ball (true centre, true radius (B, N)) lies fully inside the frame."""
    return in_frame(position, radius[:, None, :, None], world_size)


def collision_frame(velocity: np.ndarray) -> np.ndarray:
    """(B,) index of the first frame whose true velocity differs from frame 0's (T if none)."""
    changed = np.any(np.abs(velocity - velocity[:, :1]) > COLLISION_TOL, axis=(2, 3))  # (B, T)
    first = np.argmax(changed, axis=1)
    return np.where(changed.any(axis=1), first, velocity.shape[1])


def scored_steps(
    true_position: np.ndarray, true_radius: np.ndarray, world_size: float, cond_frames: int
) -> np.ndarray:
    """(B, T-1, N) bool: steps after the condition with the ball fully in view at both ends."""
    view = in_view(true_position, true_radius, world_size)  # (B, T, N)
    steps = view[:, :-1] & view[:, 1:]
    steps[:, :cond_frames] = False
    return steps


def _masked_mean(values: np.ndarray, mask: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Mean of `values` where `mask` over `axis` (default: all but the first); NaN where none."""
    axes = tuple(range(1, values.ndim)) if axis is None else axis
    count = mask.sum(axis=axes)
    total = np.where(mask, values, 0.0).sum(axis=axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def velocity_errors(
    parsed: BallStates,
    true_position: np.ndarray,
    true_velocity: np.ndarray,
    true_radius: np.ndarray,
    *,
    world_size: float,
    frame_dt: float,
    cond_frames: int,
    scenario: str,
) -> dict[str, np.ndarray]:
    """Per-video kinematic metrics, each an array (B,) (NaN where a video has no scored step).

    Shapes: `true_position`, `true_velocity` (B, T, N, 2); `true_radius` (B, N); `parsed` holds
    the same N balls in the same order.
    """
    v_parsed = finite_difference(parsed.position, frame_dt)  # (B, T-1, N, 2)
    v_true = finite_difference(true_position, frame_dt)
    err = np.linalg.norm(v_parsed - v_true, axis=-1)  # (B, T-1, N), NaN where not found
    found = parsed.found[:, :-1] & parsed.found[:, 1:]
    steps = scored_steps(true_position, true_radius, world_size, cond_frames)
    out: dict[str, np.ndarray] = {}
    if scenario == "collision":
        t_c = collision_frame(true_velocity)[:, None, None]  # (B, 1, 1)
        t = np.arange(steps.shape[1])[None, :, None]
        pre, post = steps & (t + 1 < t_c), steps & (t >= t_c)
        out["vel_error_pre"] = _masked_mean(err, pre & found)
        out["vel_error_post"] = _masked_mean(err, post & found)
        out.update(_conservation_errors(parsed, v_parsed, v_true, true_radius, post & found))
        steps = post
    out["vel_error"] = _masked_mean(err, steps & found)
    out["missing"] = _masked_mean((~found).astype(np.float64), steps)
    return out


def _conservation_errors(
    parsed: BallStates,
    v_parsed: np.ndarray,
    v_true: np.ndarray,
    true_radius: np.ndarray,
    valid: np.ndarray,
) -> dict[str, np.ndarray]:
    """Momentum and kinetic-energy errors of the whole system over steps where every ball is valid."""
    both = valid.all(axis=2)  # (B, T-1)
    r_parsed = 0.5 * (parsed.radius[:, :-1] + parsed.radius[:, 1:])  # (B, T-1, N)
    m_parsed = np.pi * r_parsed**2
    m_true = np.pi * true_radius[:, None, :] ** 2  # (B, 1, N)
    p_parsed = (m_parsed[..., None] * np.nan_to_num(v_parsed)).sum(axis=2)  # (B, T-1, 2)
    p_true = (m_true[..., None] * v_true).sum(axis=2)
    e_parsed = 0.5 * (m_parsed * np.nan_to_num((v_parsed**2).sum(-1))).sum(axis=2)  # (B, T-1)
    e_true = 0.5 * (m_true * (v_true**2).sum(-1)).sum(axis=2)
    return {
        "momentum_error": _masked_mean(np.linalg.norm(p_parsed - p_true, axis=-1), both),
        "energy_error": _masked_mean(np.abs(e_parsed - e_true), both),
    }


def paper_velocity_errors(
    parsed: BallStates,
    true_position: np.ndarray,
    true_velocity: np.ndarray,
    true_radius: np.ndarray,
    *,
    world_size: float,
    frame_dt: float,
    cond_frames: int,
    scenario: str,
) -> np.ndarray:
    """(B,) the paper's velocity error of each video (see the module docstring); NaN for a
    video its radius filter drops or with no scored step. Shapes as `velocity_errors`."""
    x = parsed.position[..., 0].copy()  # (B, T, N)
    missing_x = np.full(x.shape[-1], world_size)
    if scenario == "collision":
        missing_x[0] = 0.0
    x = np.where(np.isnan(x), missing_x, x)
    v_parsed = np.diff(x, axis=1) / frame_dt  # (B, T-1, N)
    # As the authors, a frame counts when every ball is in view in it.
    steps = scored_steps(true_position, true_radius, world_size, cond_frames).all(2, keepdims=True)
    if scenario == "collision":
        t_c = collision_frame(true_velocity)[:, None, None]
        steps = steps & (np.arange(steps.shape[1])[None, :, None] >= t_c)
        v_true = _masked_mean(finite_difference(true_position, frame_dt)[..., 0], steps, axis=1)
    else:
        v_true = true_velocity[:, 0, :, 0]  # (B, N): uniform and parabolic v_x never change
    err = np.abs(_masked_mean(v_parsed, steps, axis=1) - v_true).mean(axis=1)  # (B,)
    least, inclusive = PAPER_MIN_RADIUS.get(scenario, (0.0, True))
    kept = (true_radius >= least if inclusive else true_radius > least).all(axis=1)
    return np.where(kept, err, np.nan)
