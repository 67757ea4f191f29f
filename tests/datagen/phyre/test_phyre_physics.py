"""Invariants of the combinatorial scenes: placement, contacts, walls, energy, determinism."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pymunk
import pytest

from datagen.config import DatagenConfigError
from datagen.sampling import SceneSpec
from datagen.scenes import phyre
from datagen.scenes.phyre_templates import template_objects

W = phyre.objects.WORLD_SIZE
PIXEL = W / 256  # one pixel of a 256 x 256 video, in metres
FRAMES, SUBSTEPS, FRAME_DT = 32, 20, 1 / 3


def spec(**options) -> SceneSpec:
    return SceneSpec(
        scene="phyre", level=options.pop("level", "in_template"), sampling="random", count=0,
        ranges={}, grid={}, exclude=[], options={"templates": "all", "videos_per_template": 1, **options},
        world_size=W, frames=FRAMES, frame_dt=FRAME_DT, substeps=SUBSTEPS, seed=options.pop("seed", 0),
    )  # fmt: skip


def scene(template: int, seed: int) -> list[phyre.objects.Obj]:
    rng = np.random.default_rng([seed, template])
    layout = phyre.placement.place_layout(template, rng, W)
    user = phyre.placement.place_user_ball(layout, rng, W)
    assert user is not None
    return [*layout, user]


def posed(
    objs: list[phyre.objects.Obj], traj: phyre.chipmunk.Trajectory, f: int
) -> list[phyre.objects.Obj]:
    out = []
    for k, o in enumerate(objs):
        p = phyre.objects.Obj(o.type, o.dynamic, o.colour, o.circles, o.polygons, o.shape, o.size)
        (p.x, p.y), p.angle = traj.positions[f, k], traj.angles[f, k]
        out.append(p)
    return out


def worst_overlap(objs: list[phyre.objects.Obj]) -> float:
    """Deepest overlap between two objects that can collide (static pairs never do)."""
    return max(
        phyre.overlap.penetration(a, b)
        for i, a in enumerate(objs)
        for b in objs[:i]
        if a.dynamic or b.dynamic
    )


def test_penetration_depth_of_simple_pairs():
    bar = phyre.objects.bar("dynamic_bar", 10.0, 1.0, True)
    other = phyre.objects.bar("dynamic_bar", 10.0, 1.0, True)
    other.angle = np.pi / 2  # a cross: the shortest push slides one bar out along the other
    assert phyre.overlap.penetration(bar, other) == pytest.approx(5.0 + 0.5)
    other.x = 20.0
    assert phyre.overlap.penetration(bar, other) < 0
    ball = phyre.objects.ball("user_ball", 2.0, True, phyre.objects.RED)
    ball.y = 2.4  # resting 0.1 into the bar's top face at y = 0.5
    assert phyre.overlap.penetration(ball, bar) == pytest.approx(0.1)
    ball.x, ball.y = 6.0, 1.5  # near the corner (5, 0.5): the vertex axis decides
    assert phyre.overlap.penetration(ball, bar) == pytest.approx(2.0 - np.hypot(1.0, 1.0))


@pytest.mark.parametrize("seed", [0, 1])
def test_layouts_have_no_overlap_and_stay_inside(seed):
    for template in range(70):
        objs = scene(template, seed)
        kinds = {o.type for o in objs}
        assert kinds - {"user_ball"} == set(template_objects(template))
        assert [o.type for o in objs].count("user_ball") == 1
        assert worst_overlap(objs) <= phyre.overlap.OVERLAP_TOLERANCE
        assert max(phyre.overlap.outside(o, W) for o in objs) <= phyre.overlap.OVERLAP_TOLERANCE


def check_trajectory(objs: list[phyre.objects.Obj]) -> None:
    traj = phyre.chipmunk.simulate_objects(objs, W, FRAMES, SUBSTEPS, FRAME_DT)
    dyn = np.isfinite(traj.mass)
    # Objects start at rest; static ones never move.
    assert not traj.velocities[0].any() and not traj.angular_velocities[0].any()
    assert (traj.positions[:, ~dyn] == traj.positions[:1, ~dyn]).all()
    # Contacts: overlaps stay within 1.5 pixels of a 256 x 256 video; nothing crosses a wall.
    for f in range(FRAMES):
        at = posed(objs, traj, f)
        assert worst_overlap(at) < 1.5 * PIXEL, f"frame {f}"
        assert max(phyre.overlap.outside(o, W) for o in at) < 1.5 * PIXEL, f"frame {f}"
    # Energy never grows beyond the integrator's known free-fall excess: semi-implicit Euler
    # overshoots the height of a falling body by g dt t / 2, i.e. m g^2 dt t / 2 of energy.
    m, inertia = traj.mass[dyn], traj.moment[dyn]
    v, w, y = traj.velocities[:, dyn], traj.angular_velocities[:, dyn], traj.positions[:, dyn, 1]
    energy = (0.5 * m * (v**2).sum(-1) + 0.5 * inertia * w**2 + m * phyre.chipmunk.GRAVITY * y).sum(
        -1
    )
    t = np.arange(FRAMES) * FRAME_DT
    excess = m.sum() * phyre.chipmunk.GRAVITY**2 * (FRAME_DT / SUBSTEPS) * t / 2
    assert (energy <= energy[0] + excess + 1e-9 * energy[0]).all()
    # Something happens: gravity moved the dynamic objects.
    assert np.abs(traj.positions[-1, dyn] - traj.positions[0, dyn]).max() > 1.0


@pytest.mark.parametrize("template", range(0, 70, 5))
def test_simulation_invariants(template):
    check_trajectory(scene(template, seed=3))


@pytest.mark.slow
def test_simulation_invariants_every_template():
    for template in range(70):
        check_trajectory(scene(template, seed=4))


def sample_bytes(index: int) -> bytes:
    s = spec()
    params = phyre.sample_params(s, index, np.random.default_rng([0, index]))
    states = phyre.simulate(params, s)
    frames = phyre.render(states, W, 64)
    return (
        b"".join(
            np.ascontiguousarray(a).tobytes()
            for a in (frames, states.positions, states.velocities, states.angles)
        )
        + repr(params).encode()
    )


def test_same_seed_same_bytes():
    assert sample_bytes(7) == sample_bytes(7)
    assert sample_bytes(7) != sample_bytes(8)
    # And in a fresh interpreter (other hash seed, other import order).
    code = (
        f"import hashlib, sys; sys.path.insert(0, {str(Path(__file__).parent)!r});"
        "from test_phyre_physics import sample_bytes;"
        "print(hashlib.sha256(sample_bytes(7)).hexdigest())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == hashlib.sha256(sample_bytes(7)).hexdigest()


def test_layouts_per_template_share_layouts_not_red_balls():
    s = spec(templates="train6", videos_per_template=4, layouts_per_template=2)
    p = [phyre.sample_params(s, i, np.random.default_rng([0, i])) for i in range(4)]
    assert [q["template"] for q in p] == [3, 3, 3, 3]
    assert p[0]["objects"][:-1] == p[2]["objects"][:-1]  # layout 0 twice
    assert p[0]["objects"][-1] != p[2]["objects"][-1]  # with its own red ball
    assert p[0]["objects"][:-1] != p[1]["objects"][:-1]
    # Layouts are kept between videos: the same objects as placing layout 1 afresh.
    fresh = phyre.placement.place_layout(3, np.random.default_rng([0, 3, 1, 0x5C3E]), W)
    assert p[1]["objects"][:-1] == [
        {**o.describe(), "x": o.x, "y": o.y, "angle": o.angle} for o in fresh
    ]
    # An eval set from another seed draws other layouts: held out within the template.
    e = spec(templates="train6", videos_per_template=4, layouts_per_template=2, seed=1)
    q = phyre.sample_params(e, 0, np.random.default_rng([1, 0]))
    assert q["objects"][:-1] not in [r["objects"][:-1] for r in p]


def test_validate_and_count():
    assert phyre.count(spec(templates="train30", videos_per_template=3)) == 90
    phyre.validate(spec(templates="out_template", level="out_template"))
    with pytest.raises(DatagenConfigError, match="out_template"):
        phyre.validate(spec(templates="train6", level="out_template"))
    with pytest.raises(DatagenConfigError, match="held-out"):
        phyre.validate(spec(templates="all"))
    with pytest.raises(DatagenConfigError, match=r"options\.templates"):
        phyre.validate(spec(templates="7-99"))


def test_unplaceable_template_is_a_clear_error(monkeypatch):
    def too_big(rng, w):
        return [phyre.objects.bar("dynamic_bar", 2 * w, 1.0, True)]  # longer than the scene

    monkeypatch.setitem(phyre.placement.BUILDERS, "dynamic_bar", too_big)
    monkeypatch.setattr(phyre.placement, "MAX_LAYOUTS", 2)
    monkeypatch.setattr(phyre.placement, "MAX_TRIES", 3)
    with pytest.raises(
        phyre.placement.PlacementError, match=r"template 5 .*dynamic_bar.*2 attempts"
    ):
        phyre.placement.place_layout(5, np.random.default_rng(0), W)


def pymunk_reference(objs: list[phyre.objects.Obj], frames: int = FRAMES) -> np.ndarray:
    """(T, N, 6) states from the same world built and stepped through pymunk's Python API."""
    space = pymunk.Space()
    space.gravity = (0.0, -phyre.chipmunk.GRAVITY)
    space.iterations = phyre.chipmunk.SOLVER_ITERATIONS
    space.sleep_time_threshold = phyre.chipmunk.SLEEP_TIME
    space.idle_speed_threshold = phyre.chipmunk.SLEEP_SPEED
    friction, elasticity = np.sqrt(phyre.chipmunk.FRICTION), np.sqrt(phyre.chipmunk.RESTITUTION)
    t = phyre.chipmunk.WALL * W
    walls = pymunk.Body(body_type=pymunk.Body.STATIC)
    boxes = [((W / 2, -t / 2), (W + 2 * t, t)), ((W / 2, W + t / 2), (W + 2 * t, t)),
             ((-t / 2, W / 2), (t, W)), ((W + t / 2, W / 2), (t, W))]  # fmt: skip
    shapes = [
        pymunk.Poly(walls, [tuple(v + c) for v in phyre.objects.rectangle(*size)])
        for c, size in boxes
    ]
    for s in shapes:
        s.friction, s.elasticity = friction, elasticity
    space.add(walls, *shapes)
    bodies = []
    for obj in objs:
        body = pymunk.Body() if obj.dynamic else pymunk.Body(body_type=pymunk.Body.STATIC)
        body.position, body.angle = (obj.x, obj.y), obj.angle
        shapes = [pymunk.Circle(body, r, (cx, cy)) for cx, cy, r in obj.circles]
        shapes += [pymunk.Poly(body, [tuple(v) for v in p]) for p in obj.polygons]
        for s in shapes:
            s.friction, s.elasticity = friction, elasticity
            if obj.dynamic:
                s.density = phyre.chipmunk.DENSITY
        space.add(body, *shapes)
        bodies.append(body)
    dt = FRAME_DT / SUBSTEPS
    damping = (1.0 / (1.0 + dt * phyre.chipmunk.ANGULAR_DAMPING)) ** SUBSTEPS
    out = np.zeros((frames, len(bodies), 6))
    for f in range(frames):
        for _ in range(SUBSTEPS if f else 0):
            space.step(dt)
        for i, b in enumerate(bodies):
            dynamic = b.body_type == pymunk.Body.DYNAMIC
            if f and dynamic and b.kinetic_energy > b.mass * phyre.chipmunk.SLEEP_SPEED**2:
                b.angular_velocity *= damping  # only if moving: any write wakes a body
            out[f, i, :3] = *b.position, b.angle
            if not b.is_sleeping:  # a sleeping body is at rest
                out[f, i, 3:] = *b.velocity, b.angular_velocity
    return out


@pytest.mark.parametrize("template", [12, 42])  # 12 sleeps whole from frame 19, 42 in part
def test_chipmunk_c_api_world_equals_pymunk_world(template):
    """The world built and stepped through Chipmunk's C functions is pymunk's, bit for bit, also
    once bodies sleep (recorded at rest) and after the early stop when all of them do."""
    objs = scene(template, seed=6)
    ours = phyre.chipmunk.simulate_objects(objs, W, FRAMES, SUBSTEPS, FRAME_DT)
    ref = pymunk_reference(objs)
    dyn = np.isfinite(ours.mass)
    at_rest = ~ours.velocities[:, dyn].any(-1) & (ours.angular_velocities[:, dyn] == 0)
    assert at_rest[1:].any() and not at_rest[1:].all()
    assert at_rest[-1].all() == (template == 12)
    np.testing.assert_array_equal(ours.positions, ref[..., 0:2])
    np.testing.assert_array_equal(ours.angles, ref[..., 2])
    np.testing.assert_array_equal(ours.velocities, ref[..., 3:5])
    np.testing.assert_array_equal(ours.angular_velocities, ref[..., 5])


def test_dynamic_body_without_area_is_refused():
    flat = phyre.objects.Obj(
        "dynamic_bar", True, phyre.objects.GRAY, np.zeros((0, 3)), [np.zeros((4, 2))]
    )
    with pytest.raises(ValueError, match=r"dynamic_bar.*no mass"):
        phyre.chipmunk.simulate_objects([flat], W, 2, SUBSTEPS, FRAME_DT)


# Placements of two videos of the default spec, pinned (metres, radians, to 1e-6): a change in how
# objects are drawn or tested for overlap changes them.
PINNED = {
    7: [("static_balls", 34.133333, 46.933333, 0.0), ("static_balls", 40.591385, 38.824908, 0.0),
        ("static_balls", 54.459005, 33.025685, 0.0), ("static_balls", 60.278663, 33.645179, 0.0),
        ("static_balls", 68.551754, 39.405039, 0.0), ("static_balls", 61.954476, 33.559254, 0.0),
        ("dynamic_ball_2", 34.236986, 76.860612, 0.0), ("dynamic_jar", 32.150910, 6.587900, 0.0),
        ("standing_sticks", 42.836755, 25.367533, -1.522365),
        ("user_ball", 70.554222, 16.832382, 0.0)],
    64: [("static_balls", 34.133333, 46.933333, 0.0), ("static_balls", 18.375688, 40.897131, 0.0),
         ("static_balls", 12.421325, 37.829523, 0.0), ("static_balls", 5.876904, 33.489030, 0.0),
         ("static_balls", 25.011917, 28.935267, 0.0), ("static_bar", 19.762277, 13.602145, -0.309487),
         ("dynamic_ball_1", 34.720921, 70.630019, 0.0),
         ("standing_bars", 32.628168, 8.533333, 1.570796),
         ("standing_bars", 45.428168, 10.666667, 1.570796), ("user_ball", 12.841697, 45.148699, 0.0)],
}  # fmt: skip


@pytest.mark.parametrize("index", sorted(PINNED))
def test_placements_are_pinned(index):
    params = phyre.sample_params(spec(), index, np.random.default_rng([0, index]))
    got = [(o["type"], o["x"], o["y"], o["angle"]) for o in params["objects"]]
    assert [g[0] for g in got] == [p[0] for p in PINNED[index]]
    np.testing.assert_allclose([g[1:] for g in got], [p[1:] for p in PINNED[index]], atol=1e-6)
