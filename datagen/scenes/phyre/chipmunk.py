"""The Chipmunk driver: a PHYRE-like world built and stepped through Chipmunk's C API (pymunk's
bundled library), with PHYRE's Box2D materials (see the package docstring)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymunk._chipmunk import lib as cp

from datagen.scenes.phyre.objects import Obj, rectangle

GRAVITY = 9.8


DENSITY = 0.25


FRICTION = 0.5


RESTITUTION = 0.2


ANGULAR_DAMPING = 0.01


SOLVER_ITERATIONS = 15  # PHYRE's Box2D velocity iterations


SLEEP_TIME = 0.5  # seconds at rest before a body sleeps (Box2D's b2_timeToSleep)


SLEEP_SPEED = 0.01  # m/s: slower is at rest (Box2D's b2_linearSleepTolerance)


WALL = 0.1  # wall thickness, fraction of the scene; the walls lie just outside it


_IDENTITY = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)  # cpTransform a, b, c, d, tx, ty


@contextmanager
def _chipmunk_space(objs: list[Obj], w: float) -> Iterator[tuple[Any, list[Any]]]:
    """The scene as a Chipmunk space (walls, then one body per object): (space, body handles),
    freed on exit.

    Built with Chipmunk's C functions (pymunk's cffi binding), the calls pymunk's `Space`,
    `Body`, `Circle` and `Poly` make, in the order they make them, so the world is the one
    pymunk would build (tested bit for bit): pymunk's Python objects cost ~1 ms per scene to
    build and ~0.5 us per property read, as much as the 620 steps' collision work.
    """
    space = cp.cpSpaceNew()
    bodies: list[Any] = []
    shapes: list[Any] = []

    def add(body, circles, polygons, dynamic: bool) -> None:
        own = [cp.cpCircleShapeNew(body, r, (cx, cy)) for cx, cy, r in circles]
        own += [
            cp.cpPolyShapeNew(body, len(p), [tuple(v) for v in p], _IDENTITY, 0.0) for p in polygons
        ]
        for s in own:
            cp.cpShapeSetFriction(s, friction)
            cp.cpShapeSetElasticity(s, elasticity)
            if dynamic:
                cp.cpShapeSetDensity(s, DENSITY)
        cp.cpSpaceAddBody(space, body)
        for s in own:
            cp.cpSpaceAddShape(space, s)
        shapes.extend(own)

    try:
        cp.cpSpaceSetGravity(space, (0.0, -GRAVITY))
        cp.cpSpaceSetIterations(space, SOLVER_ITERATIONS)
        cp.cpSpaceSetSleepTimeThreshold(space, SLEEP_TIME)
        cp.cpSpaceSetIdleSpeedThreshold(space, SLEEP_SPEED)
        friction, elasticity = math.sqrt(FRICTION), math.sqrt(RESTITUTION)  # see module docstring
        t = WALL * w
        walls = cp.cpBodyNewStatic()
        bodies.append(walls)
        boxes = [((w / 2, -t / 2), (w + 2 * t, t)), ((w / 2, w + t / 2), (w + 2 * t, t)),
                 ((-t / 2, w / 2), (t, w)), ((w + t / 2, w / 2), (t, w))]  # fmt: skip
        add(walls, (), [rectangle(*size) + c for c, size in boxes], dynamic=False)
        handles = []
        for obj in objs:
            body = cp.cpBodyNew(0.0, 0.0) if obj.dynamic else cp.cpBodyNewStatic()
            bodies.append(body)
            cp.cpBodySetPosition(body, (obj.x, obj.y))
            cp.cpBodySetAngle(body, obj.angle)
            add(body, obj.circles, obj.polygons, obj.dynamic)
            handles.append(body)
        for obj, body in zip(objs, handles):
            if obj.dynamic and not cp.cpBodyGetMass(body) > 0.0:
                raise ValueError(f"{obj.type}: a dynamic body without area (no mass)")
        yield space, handles
    finally:
        cp.cpSpaceFree(space)  # frees the space's own data only: then its shapes and bodies
        for s in shapes:
            cp.cpShapeFree(s)
        for b in bodies:
            cp.cpBodyFree(b)


@dataclass
class Trajectory:
    """Per-frame states of every object (static ones included), plus mass and moment."""

    positions: np.ndarray  # (T, N, 2) centre of mass
    velocities: np.ndarray  # (T, N, 2)
    angles: np.ndarray  # (T, N)
    angular_velocities: np.ndarray  # (T, N)
    mass: np.ndarray  # (N,) inf for static
    moment: np.ndarray  # (N,)


def _state(body) -> tuple[float, float, float, float, float, float]:
    """x, y, angle, vx, vy, angular velocity of a Chipmunk body."""
    p, v = cp.cpBodyGetPosition(body), cp.cpBodyGetVelocity(body)
    return p.x, p.y, cp.cpBodyGetAngle(body), v.x, v.y, cp.cpBodyGetAngularVelocity(body)


def simulate_objects(
    objs: list[Obj], w: float, frames: int, substeps: int, frame_dt: float
) -> Trajectory:
    """Run the scene from rest; frame k is the state after k * substeps steps of frame_dt/substeps.

    Bodies at rest fall asleep (after SLEEP_TIME below SLEEP_SPEED, as in Box2D) and are recorded
    at rest (Box2D zeroes a sleeping body's velocity; Chipmunk keeps the last, unused); once every
    one sleeps nothing can move again, and the remaining frames repeat the last without stepping.
    """
    dt = frame_dt / substeps
    # Box2D's per-step angular damping, compounded over a frame.
    damping = (1.0 / (1.0 + dt * ANGULAR_DAMPING)) ** substeps
    dynamic = np.array([obj.dynamic for obj in objs], dtype=bool)
    with _chipmunk_space(objs, w) as (space, bodies):
        first = [_state(b) for b in bodies]  # static bodies keep it: recorded once
        moving = [b for b, d in zip(bodies, dynamic) if d]
        # Chipmunk's rest threshold: kinetic energy below m * SLEEP_SPEED^2 counts as at rest.
        rest = [cp.cpBodyGetMass(b) * SLEEP_SPEED**2 for b in moving]
        rows = []  # the moving bodies' states, frame after frame from frame 1
        for _ in range(1, frames):
            for _ in range(substeps):
                cp.cpSpaceStep(space, dt)
            awake = False
            for b, rest_energy in zip(moving, rest):
                p = cp.cpBodyGetPosition(b)
                if cp.cpBodyIsSleeping(b):
                    rows.append((p.x, p.y, cp.cpBodyGetAngle(b), 0.0, 0.0, 0.0))
                    continue
                awake = True
                spin = cp.cpBodyGetAngularVelocity(b)
                # Damp moving bodies only: any velocity write restarts Chipmunk's sleep timer, so
                # damping a body at rest (too slow for it to matter) would keep it awake forever.
                if cp.cpBodyKineticEnergy(b) > rest_energy:
                    spin *= damping
                    cp.cpBodySetAngularVelocity(b, spin)
                v = cp.cpBodyGetVelocity(b)
                rows.append((p.x, p.y, cp.cpBodyGetAngle(b), v.x, v.y, spin))
            if not awake:
                break
        mass = np.array([cp.cpBodyGetMass(b) if d else np.inf for b, d in zip(bodies, dynamic)])
        moment = np.array([cp.cpBodyGetMoment(b) if d else np.inf for b, d in zip(bodies, dynamic)])
    out = np.zeros((frames, len(objs), 6))
    out[:, :, :3] = np.array(first).reshape(1, len(objs), 6)[:, :, :3]
    if rows:
        done = len(rows) // len(moving)  # frames simulated after the first
        out[1 : 1 + done, dynamic] = np.array(rows).reshape(done, len(moving), 6)
        out[1 + done :, dynamic] = out[done, dynamic]  # all asleep: nothing moves any more
    return Trajectory(
        positions=out[:, :, 0:2],
        velocities=out[:, :, 3:5],
        angles=out[:, :, 2],
        angular_velocities=out[:, :, 5],
        mass=mass,
        moment=moment,
    )
