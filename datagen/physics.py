"""pymunk worlds for the kinematic scenes: perfectly elastic, frictionless, undamped.

pymunk (Chipmunk) has no restitution velocity threshold, so slow collisions stay elastic; the
elasticity of a contact is the product of the two shapes' values, so every shape gets 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymunk
import pymunk.batch
from pymunk._chipmunk import lib as _cp

from datagen.scenes import States

RED = [255, 0, 0]
BLUE = [0, 0, 255]
BLACK = [0, 0, 0]


# Worlds of several bodies share a space `CONTACT_BATCH` at a time, each with its own
# collision-filter bit. Their shapes overlap in space (every video happens near the centre), so
# Chipmunk's broadphase tests every pair of them before the filter rejects it: measured fastest
# at 4-8 worlds per space (x2.5 faster than alone per video, and than 32 together).
CONTACT_BATCH = 8


@dataclass
class World:
    """One video's world before it runs: its objects (the `objects` column), each one's start
    (static objects, the walls, have velocity None), the gravity and the steps per frame."""

    objects: list[dict]
    starts: list[tuple[tuple[float, float], tuple[float, float] | None]]
    gravity: float = 0.0
    substeps: int = 10


def make_space(gravity: float = 0.0) -> pymunk.Space:
    """An empty world; `gravity` points down (world y is up)."""
    space = pymunk.Space()
    space.gravity = (0.0, -gravity)
    space.damping = 1.0  # no velocity loss
    # Chipmunk lets shapes overlap by `collision_slop` (0.1 by default, a tenth of a ball radius
    # here) before pushing them apart; keep overlap and the position correction negligible.
    space.collision_slop = 1e-4
    return space


def _finish(space, body: pymunk.Body, shape: pymunk.Shape, shape_filter) -> pymunk.Body:
    shape.elasticity = 1.0
    shape.friction = 0.0
    if shape_filter is not None:
        shape.filter = shape_filter
    space.add(body, shape)
    return body


def add_ball(
    space, position, velocity, radius: float, density: float = 1.0, shape_filter=None
) -> pymunk.Body:
    """A dynamic disc of mass density * pi r^2."""
    body = pymunk.Body()
    body.position = tuple(position)
    shape = pymunk.Circle(body, radius)
    shape.density = density
    _finish(space, body, shape, shape_filter)
    body.velocity = tuple(velocity)
    return body


def add_box(
    space, position, velocity, size, angle: float = 0.0, density: float = 1.0, shape_filter=None
) -> pymunk.Body:
    """A dynamic rectangle of `size` = (w, h) centred at `position`."""
    body = pymunk.Body()
    body.position = tuple(position)
    body.angle = angle
    shape = pymunk.Poly.create_box(body, tuple(size))
    shape.density = density
    _finish(space, body, shape, shape_filter)
    body.velocity = tuple(velocity)
    return body


def add_static_box(space, position, size, shape_filter=None) -> pymunk.Body:
    """An immovable rectangle (a wall), returned as its static body."""
    body = pymunk.Body(body_type=pymunk.Body.STATIC)
    body.position = tuple(position)
    _finish(space, body, pymunk.Poly.create_box(body, tuple(size)), shape_filter)
    return body


def add_object(space, obj: dict, position, velocity, shape_filter=None) -> pymunk.Body:
    """Add the body for an `objects` entry (rings collide as discs of their outer radius)."""
    if obj["shape"] in ("circle", "ring"):
        return add_ball(space, position, velocity, obj["radius"], shape_filter=shape_filter)
    return add_box(space, position, velocity, obj["size"], shape_filter=shape_filter)


def simulate(worlds: list[World], frames: int, frame_dt: float) -> list[States]:
    """Every world's states at each frame (frame 0 = the start), in order.

    Worlds with the same gravity and steps share a pymunk Space, so that one Chipmunk step
    advances them all. A one-body world has nothing to touch: its body gets no shape (and no
    broadphase work); free flight does not depend on the mass (the force is zero), so its
    motion is the same. Worlds of several bodies come `CONTACT_BATCH` at a time, each world's
    shapes with their own collision-filter bit so they never touch another world's. A body's
    motion depends only on its own state, the space's settings and its own contacts, so a
    world's states are bit-for-bit those it has alone (tests/datagen/test_datagen_physics.py).
    """
    out: list[States | None] = [None] * len(worlds)
    groups: dict[tuple[float, int, bool], list[int]] = {}
    for i, w in enumerate(worlds):
        groups.setdefault((w.gravity, w.substeps, len(w.objects) > 1), []).append(i)
    for (_, _, contacts), members in groups.items():
        size = CONTACT_BATCH if contacts else len(members)
        for lo in range(0, len(members), size):
            batch = members[lo : lo + size]
            for i, states in zip(batch, _run([worlds[i] for i in batch], frames, frame_dt)):
                out[i] = states
    return out


_FIELDS = (
    pymunk.batch.BodyFields.POSITION
    | pymunk.batch.BodyFields.ANGLE
    | pymunk.batch.BodyFields.VELOCITY
)  # per body, in Chipmunk's order: x, y, angle, vx, vy


def _run(worlds: list[World], frames: int, frame_dt: float) -> list[States]:
    """Step worlds of one gravity and substep count together in one space."""
    space = make_space(worlds[0].gravity)
    bodies = []
    for j, w in enumerate(worlds):
        if len(w.objects) == 1:  # free flight: a body without a shape (see `simulate`)
            position, velocity = w.starts[0]
            body = pymunk.Body(1.0, 1.0)
            body.position, body.velocity = tuple(position), tuple(velocity)
            space.add(body)
            bodies.append(body)
            continue
        own = pymunk.ShapeFilter(categories=1 << j, mask=1 << j)
        for obj, (position, velocity) in zip(w.objects, w.starts):
            if velocity is None:
                bodies.append(add_static_box(space, position, obj["size"], own))
            else:
                bodies.append(add_object(space, obj, position, velocity, own))
    space.step(0.0)  # pymunk's own checks (masses, moments) and pending additions, once
    # pymunk.batch reads every body's state in one C call per frame; its order (dynamic bodies,
    # then static ones) is found once from the body ids.
    ids = pymunk.batch.Buffer()
    pymunk.batch.get_space_bodies(space, pymunk.batch.BodyFields.BODY_ID, ids)
    row = {body_id: k for k, body_id in enumerate(memoryview(ids.int_buf()).cast("P"))}
    order = np.array([row[b.id] for b in bodies])
    states = pymunk.batch.Buffer()
    handle, dt = space._space, frame_dt / worlds[0].substeps
    for f in range(frames):
        if f:
            for _ in range(worlds[0].substeps):
                # Chipmunk's step itself: `Space.step` adds ~1.5 us of Python bookkeeping per call
                # (locks, deferred add/remove, post-step callbacks), which we never use.
                _cp.cpSpaceStep(handle, dt)
        pymunk.batch.get_space_bodies(space, _FIELDS, states)  # appends this frame's rows
    data = np.frombuffer(states.float_buf(), np.float64).reshape(frames, len(bodies), 5)
    data = data[:, order].astype(np.float32)  # (T, bodies, 5), in the worlds' order
    out, k = [], 0
    for w in worlds:
        d = data[:, k : k + len(w.objects)]
        k += len(w.objects)
        out.append(
            States(
                np.ascontiguousarray(d[..., 0:2]),
                np.ascontiguousarray(d[..., 3:5]),
                np.ascontiguousarray(d[..., 2]),
                w.objects,
            )
        )
    return out


def shape_object(shape: str, colour, size: float, dynamic: bool = True, ring_ratio: float = 0.6):
    """The `objects` entry for a ball / square / ring of characteristic size `size` (radius or half-side)."""
    if shape == "circle":
        return {
            "type": "ball",
            "shape": "circle",
            "colour": list(colour),
            "radius": size,
            "dynamic": dynamic,
        }
    if shape == "box":
        return {
            "type": "square",
            "shape": "box",
            "colour": list(colour),
            "size": [2 * size, 2 * size],
            "dynamic": dynamic,
        }
    if shape == "ring":
        return {
            "type": "ring",
            "shape": "ring",
            "colour": list(colour),
            "radius": size,
            "inner_radius": ring_ratio * size,
            "dynamic": dynamic,
        }
    raise ValueError(f"unknown shape '{shape}': use circle, box or ring")
