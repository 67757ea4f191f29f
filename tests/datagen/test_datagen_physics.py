"""Scenes against closed forms: uniform and parabolic positions per frame, elastic collisions."""

from __future__ import annotations

import numpy as np
import pytest

from datagen.sampling import SceneSpec
from datagen.scenes import get_scene

DT = 0.1


def spec(scene: str, **kw) -> SceneSpec:
    return SceneSpec(
        scene=scene,
        level="id",
        sampling="random",
        count=1,
        ranges={},
        grid={},
        exclude=[],
        options=kw.pop("options", {}),
        feasible=getattr(get_scene(scene), "feasible", None),
        **kw,
    )


@pytest.mark.parametrize(
    "v,r,flip", [(1.0, 0.7, False), (3.7, 1.4, False), (0.0, 0.5, False), (2.5, 1.0, True)]
)
def test_uniform_motion_is_linear_in_time(v, r, flip):
    s = spec("uniform", options={"flip": flip})
    params = {"v": v, "r": r, "x0": 1.3, "y0": 5.0}
    st = get_scene("uniform").simulate(params, s)
    t = np.arange(32) * DT
    x0, vx = (10.0 - 1.3, -v) if flip else (1.3, v)
    np.testing.assert_allclose(st.positions[:, 0, 0], x0 + vx * t, atol=1e-5)
    np.testing.assert_allclose(st.positions[:, 0, 1], 5.0, atol=1e-6)
    np.testing.assert_allclose(st.velocities[:, 0], np.tile([vx, 0.0], (32, 1)), atol=1e-6)
    assert st.objects[0]["radius"] == r and st.objects[0]["colour"] == [255, 0, 0]


def test_uniform_one_step_per_frame_equals_ten():
    """Free flight is stepped once per frame; the 0.01 s steps of the reference give the same."""
    from datagen import physics

    obj = physics.shape_object("circle", physics.RED, 1.0)
    worlds = [physics.World([obj], [((0.5, 5.0), (3.3, 0.0))], substeps=n) for n in (1, 10)]
    one, ten = physics.simulate(worlds, 32, DT)
    np.testing.assert_allclose(one.positions, ten.positions, atol=1e-5)


def _worlds(scene: str, ranges: dict, options: dict, n: int, substeps: int = 10):
    s = spec(scene, options=options)
    s.ranges = {k: [v] for k, v in ranges.items()}
    sc = get_scene(scene)
    return [sc.world(sc.sample_params(s, i, np.random.default_rng(i)), s) for i in range(n)]


def test_worlds_stepped_together_are_bit_identical_to_each_alone():
    """The generator steps up to 32 videos in one space: each must be exactly as alone."""
    from datagen import physics

    speeds, radii = [1.0, 4.0], [0.5, 1.5]
    worlds = (
        _worlds("collision", {"v1": speeds, "v2": speeds, "r1": radii, "r2": radii}, {}, 30)
        + _worlds(
            "temporal_composition",
            {"v1": speeds, "v2": speeds, "r1": radii, "r2": radii},
            {"balls": 2, "wall": True},
            30,
        )
        + _worlds(
            "spatial_composition",
            {"v_square": speeds, "v_ball": speeds, "s": [0.5, 1.0], "r": [0.5, 1.0]},
            {},
            10,
        )
        + _worlds("parabola", {"v": speeds, "r": radii}, {}, 5)
        + _worlds("uniform", {"v": speeds, "r": radii}, {"shape": "box"}, 5)
    )
    # Copies of one world on top of each other would collide if the filters let them.
    worlds += [worlds[0]] * 20
    together = physics.simulate(worlds, 32, DT)  # 4 gravity / substep groups, 3 spaces of 32
    for w, st in zip(worlds, together):
        (alone,) = physics.simulate([w], 32, DT)
        assert st.objects == w.objects
        for key in ("positions", "velocities", "angles"):
            np.testing.assert_array_equal(getattr(st, key), getattr(alone, key))
    # ... and each copy's two balls did meet (inside the video, by the collision sampling).
    v = together[-1].velocities
    assert np.abs(v[-1] - v[0]).max() > 0.1


def _starts(scene: str, ranges: dict, n: int = 300):
    s = spec(scene)
    s.ranges = ranges
    sc = get_scene(scene)
    params = [sc.sample_params(s, i, np.random.default_rng([0, i])) for i in range(n)]
    return s, sc, params


@pytest.mark.parametrize("scene", ["uniform", "parabola"])
def test_one_ball_starts_fully_in_view_where_the_authors_start_it(scene):
    """x0 ~ U(r, 10 - 2.4 v - r), or U(r, r + U(0, 0.5)) when that is empty (fast balls);
    heights U(r + 0.5, 9.5 - r) (uniform) and U(8.5 - r, 9.5 - r) (parabola)."""
    s, sc, params = _starts(scene, {"v": [[0.0, 6.0]], "r": [[0.3, 2.0]]})
    fast = 0
    for p in params:
        v, r = p["v"], p["r"]
        hi = 10 - 2.4 * v - r
        fast += hi < r
        assert r <= p["x0"] <= (hi if hi >= r else r + 0.5), p
        lo_y = 8.5 - r if scene == "parabola" else r + 0.5
        assert lo_y <= p["y0"] <= 9.5 - r, p
        x = sc.simulate(p, s).positions[:, 0]
        tol = 1e-5  # float32 states: a ball may start against the border
        assert ((x[:3] >= r - tol) & (x[:3] <= 10 - r + tol)).all(), p  # the condition frames
        if hi >= r:  # room for it: the centre stays in view for 24 frames
            assert ((x[:, 0] >= 0) & (x[:, 0] <= 10)).sum() >= 24, p
    assert 0.1 < fast / len(params) < 0.6  # both rules are exercised


def test_collision_starts_both_balls_in_view_with_8_frames_before_and_after_contact():
    ranges = {k: [[0.0, 6.0]] for k in ("v1", "v2")} | {k: [[0.3, 2.0]] for k in ("r1", "r2")}
    s, sc, params = _starts("collision", ranges, 200)
    right_wall = 0
    for p in params:
        r1, r2, v = p["r1"], p["r2"], p["v1"] + p["v2"]
        assert 0.8 * v + 2 * (r1 + r2) <= 10 + 1e-9, p  # only feasible draws
        st = sc.simulate(p, s)
        x, vx = st.positions[:, :, 0], st.velocities[:, :, 0]
        tol = 1e-5  # float32 states: a ball may start against the border
        assert ((x[:3] >= [r1 - tol, r2 - tol]) & (x[:3] <= [10 - r1 + tol, 10 - r2 + tol])).all()
        assert r1 + 0.5 <= p["y0"] <= 9.5 - r1 and r2 + 0.5 <= p["y0"] <= 9.5 - r2
        if v > 0.05:  # (slower pairs may not meet in 3.1 s)
            contact = np.flatnonzero(np.abs(vx[:, 0] - p["v1"]) > 1e-3)[0]
            assert 8 <= contact <= 25 and 32 - contact >= 7, (p, contact)
        if r2 > 2 * r1:  # a large blue ball starts within 0.5 of the right wall
            right_wall += 1
            assert p["x2"] >= 10 - r2 - 0.5 - 1e-9, p
    assert right_wall > 5


def test_collision_grid_leaves_out_what_has_no_room():
    from datagen.sampling import grid_count, params_at

    s = spec("collision")
    s.sampling = "grid"
    s.ranges = {k: [[1.0, 4.0]] for k in ("v1", "v2")} | {k: [[0.5, 1.5]] for k in ("r1", "r2")}
    s.grid = {"v1": 21, "v2": 21, "r1": 8, "r2": 8}
    n = grid_count(s)
    axes = np.meshgrid(*(np.linspace(*s.ranges[k][0], s.grid[k]) for k in s.grid), indexing="ij")
    room = 0.8 * (axes[0] + axes[1]) + 2 * (axes[2] + axes[3]) <= 10 + 1e-9
    assert n == room.sum() and 0.5 * 28_224 < n < 28_224
    last = params_at(s, n - 1, np.random.default_rng(0))
    assert 0.8 * (last["v1"] + last["v2"]) + 2 * (last["r1"] + last["r2"]) <= 10 + 1e-9


@pytest.mark.parametrize("v,r", [(1.0, 0.7), (4.0, 1.4), (2.2, 1.0)])
def test_parabola_matches_closed_form(v, r):
    """Chipmunk moves each body with its current velocity, then applies gravity: after n steps of
    h = 0.01 s, y_n = y0 - g h^2 n (n - 1) / 2 exactly, within g h t / 2 of y0 - g t^2 / 2."""
    g, h = 2.5, 0.01
    s = spec("parabola")
    params = {"v": v, "r": r, "x0": 1.0, "y0": 8.0, "gravity": g}
    st = get_scene("parabola").simulate(params, s)
    n = np.arange(32) * 10  # physics steps at each frame
    t = n * h
    np.testing.assert_allclose(st.positions[:, 0, 0], 1.0 + v * t, atol=1e-4)
    np.testing.assert_allclose(st.positions[:, 0, 1], 8.0 - g * h * h * n * (n - 1) / 2, atol=1e-4)
    np.testing.assert_allclose(st.velocities[:, 0, 1], -g * t, atol=1e-4)
    continuous = 8.0 - g * t**2 / 2
    assert np.abs(st.positions[:, 0, 1] - continuous).max() <= g * h * t.max() / 2 + 1e-4


def _elastic(m1, m2, u1, u2):
    return ((m1 - m2) * u1 + 2 * m2 * u2) / (m1 + m2), ((m2 - m1) * u2 + 2 * m1 * u1) / (m1 + m2)


@pytest.mark.parametrize(
    "v1,v2,r1,r2",
    [
        (1.0, 1.0, 0.5, 0.5),
        (4.0, 1.0, 1.5, 0.5),
        (1.3, 3.9, 0.6, 1.4),
        (0.05, 0.02, 1.0, 0.7),  # slow: Box2D's default threshold would make this inelastic
        (0.0, 2.0, 0.8, 0.8),  # one ball at rest (OOD velocity 0)
        (5.5, 0.3, 2.0, 0.3),  # OOD speeds and radii
    ],
)
def test_collision_conserves_momentum_and_energy(v1, v2, r1, r2):
    s = spec("collision")
    scene = get_scene("collision")
    # Contact at t = 1.0 s for fast pairs; slow pairs start close enough to touch in time.
    params = {"v1": v1, "v2": v2, "r1": r1, "r2": r2, "y0": 5.0}
    gap = (v1 + v2) * 1.0
    params["x1"], params["x2"] = 5.0 - r1 - gap / 2, 5.0 + r2 + gap / 2
    st = scene.simulate(params, s)
    m1, m2 = r1**2, r2**2  # mass = density * pi r^2; pi cancels
    e1, e2 = _elastic(m1, m2, v1, -v2)
    np.testing.assert_allclose(
        st.velocities[-1, :, 0], [e1, e2], atol=1e-4 + 1e-3 * (abs(e1) + abs(e2))
    )
    np.testing.assert_allclose(st.velocities[:, :, 1], 0.0, atol=1e-6)
    p = (st.velocities[:, :, 0] * [m1, m2]).sum(1)
    k = (st.velocities[:, :, 0] ** 2 * [m1, m2]).sum(1)
    np.testing.assert_allclose(p, p[0], atol=1e-4)
    np.testing.assert_allclose(k, k[0], rtol=1e-4, atol=1e-6)
    # Before contact the balls move at their initial speeds (no friction, no damping).
    np.testing.assert_allclose(st.velocities[5, :, 0], [v1, -v2], atol=1e-6)


def _composition(scene: str, ranges: dict, options: dict, seed: int):
    s = spec(scene, options=options)
    s.ranges = {k: [v] for k, v in ranges.items()}
    sc = get_scene(scene)
    p = sc.sample_params(s, 0, np.random.default_rng(seed))
    return p, sc.simulate(p, s)


@pytest.mark.parametrize("seed", range(5))
def test_spatial_composition_ball_bounces_square_keeps_going(seed):
    p, st = _composition(
        "spatial_composition",
        {"v_square": [1.0, 4.0], "v_ball": [1.0, 4.0], "s": [0.5, 1.0], "r": [0.5, 1.0]},
        {},
        seed,
    )
    vx = st.velocities[:, :, 0]
    np.testing.assert_allclose(
        vx[:, 0], p["v_square"], atol=1e-5
    )  # the square never touches anything
    flipped = np.flatnonzero(vx[:, 1] < 0)
    assert 8 <= flipped[0] <= 24  # the ball meets the wall inside the video ...
    np.testing.assert_allclose(vx[flipped[0] :, 1], -p["v_ball"], atol=1e-4)  # ... elastically
    assert st.objects[2]["type"] == "wall" and not st.objects[2]["dynamic"]


@pytest.mark.parametrize("seed", range(5))
def test_temporal_composition_bounce_then_elastic_collision(seed):
    p, st = _composition(
        "temporal_composition",
        {"v1": [1.0, 4.0], "v2": [1.0, 4.0], "r1": [0.5, 1.5], "r2": [0.5, 1.5]},
        {"balls": 2, "wall": True},
        seed,
    )
    v1, v2 = st.velocities[:, 0, 0], st.velocities[:, 1, 0]
    bounce = np.flatnonzero(v2 < 0)[0]
    hit = np.flatnonzero(np.abs(v1 - p["v1"]) > 1e-3)[0]
    assert bounce < hit  # the wall first, then the other ball
    np.testing.assert_allclose(v2[bounce:hit], -p["v2"], atol=1e-4)
    m1, m2 = p["r1"] ** 2, p["r2"] ** 2
    e1, e2 = _elastic(m1, m2, p["v1"], -p["v2"])
    np.testing.assert_allclose([v1[hit], v2[hit]], [e1, e2], atol=2e-3)
