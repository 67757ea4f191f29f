"""pymunk worlds for the kinematic scenes: perfectly elastic, frictionless, undamped.

pymunk (Chipmunk) has no restitution velocity threshold, so slow collisions stay elastic; the
elasticity of a contact is the product of the two shapes' values, so every shape gets 1.0.

Speed: a scene describes its world as data (`World`); `simulate` builds many worlds in one
Chipmunk space through pymunk's C bindings and steps them together, reading every body's state
with one call per frame (`pymunk.batch`). The states are bit-for-bit those of one world alone
built with pymunk's Python classes (pinned by the datagen tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymunk.batch
from pymunk._chipmunk import ffi as _ffi
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


class _Space:
    """A Chipmunk space built through pymunk's C bindings directly: the same calls pymunk's
    `Space`, `Body`, `Circle` and `Poly.create_box` make (and the same settings), without their
    Python objects, which cost more than the whole simulation of a one-ball video. Freed with
    everything in it by `free`."""

    def __init__(self, gravity: float) -> None:
        self.handle = _cp.cpSpaceNew()
        _cp.cpSpaceSetGravity(self.handle, (0.0, -gravity))  # gravity points down (y is up)
        _cp.cpSpaceSetDamping(self.handle, 1.0)  # no velocity loss
        # Chipmunk lets shapes overlap by `collision_slop` (0.1 by default, a tenth of a ball
        # radius here) before pushing them apart; keep overlap and position correction negligible.
        _cp.cpSpaceSetCollisionSlop(self.handle, 1e-4)
        self.bodies: list = []
        self.shapes: list = []

    def add(self, obj: dict | None, position, velocity, shape_filter=None) -> None:
        """A body for `objects` entry `obj` (rings collide as discs of their outer radius):
        dynamic of density 1, or static when `velocity` is None; without a shape (and of unit
        mass) when `obj` is None."""
        if velocity is None:
            body = _cp.cpBodyNewStatic()
        else:
            body = _cp.cpBodyNew(*((1.0, 1.0) if obj is None else (0.0, 0.0)))
        _cp.cpBodySetUserData(body, _ffi.cast("void *", len(self.bodies)))  # its row, for reads
        _cp.cpBodySetPosition(body, tuple(position))
        self.bodies.append(body)
        if obj is not None:
            if obj["shape"] in ("circle", "ring"):
                shape = _cp.cpCircleShapeNew(body, obj["radius"], (0.0, 0.0))
            else:
                shape = _cp.cpBoxShapeNew(body, obj["size"][0], obj["size"][1], 0.0)
            if velocity is not None:
                _cp.cpShapeSetDensity(shape, 1.0)
            _cp.cpShapeSetElasticity(shape, 1.0)  # a contact's elasticity is the product: 1
            _cp.cpShapeSetFriction(shape, 0.0)
            if shape_filter is not None:
                _cp.cpShapeSetFilter(shape, shape_filter)
            self.shapes.append(shape)
        _cp.cpSpaceAddBody(self.handle, body)
        if obj is not None:
            _cp.cpSpaceAddShape(self.handle, shape)
        if velocity is not None:
            _cp.cpBodySetVelocity(body, tuple(velocity))

    def free(self) -> None:
        _cp.cpSpaceFree(self.handle)  # frees the space's own structures, not what it held
        for shape in self.shapes:
            _cp.cpShapeFree(shape)
        for body in self.bodies:
            _cp.cpBodyFree(body)
        self.shapes, self.bodies = [], []


def _read(handle, fields: int, out) -> None:
    """Append every body's `fields` to the pymunk.batch buffer `out`: one C call."""
    data = _ffi.new("pmBatchedData *")
    data.fields, data.floatArray, data.intArray = fields, out._float_arr, out._int_arr
    _cp.cpSpaceEachBody(handle, _ffi.addressof(_cp, "pmSpaceBodyGetIteratorFuncBatched"), data)


_FIELDS = (
    pymunk.batch.BodyFields.POSITION
    | pymunk.batch.BodyFields.ANGLE
    | pymunk.batch.BodyFields.VELOCITY
).value  # per body, in Chipmunk's order: x, y, angle, vx, vy


def _run(worlds: list[World], frames: int, frame_dt: float) -> list[States]:
    """Step worlds of one gravity and substep count together in one space."""
    space = _Space(worlds[0].gravity)
    try:
        for j, w in enumerate(worlds):
            if len(w.objects) == 1:  # free flight: a body without a shape (see `simulate`)
                space.add(None, *w.starts[0])
                continue
            own = (0, 1 << j, 1 << j)  # cpShapeFilter: group, categories, mask
            for obj, (position, velocity) in zip(w.objects, w.starts):
                space.add(obj, position, velocity, own)
        handle, dt = space.handle, frame_dt / worlds[0].substeps
        _cp.cpSpaceStep(handle, 0.0)  # pending additions and mass checks, as pymunk does once
        # Chipmunk lists dynamic bodies before static ones: find each body's row once.
        ids = pymunk.batch.Buffer()
        _read(handle, pymunk.batch.BodyFields.BODY_ID.value, ids)
        order = np.argsort(np.frombuffer(ids.int_buf(), np.uintp))
        states = pymunk.batch.Buffer()
        for f in range(frames):
            if f:
                for _ in range(worlds[0].substeps):
                    _cp.cpSpaceStep(handle, dt)
            _read(handle, _FIELDS, states)  # appends this frame's rows
        data = np.frombuffer(states.float_buf(), np.float64).reshape(frames, len(order), 5)
        data = data[:, order].astype(np.float32)  # (T, bodies, 5), in the worlds' order
    finally:
        space.free()
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
