"""pymunk worlds for the kinematic scenes: perfectly elastic, frictionless, undamped.

pymunk (Chipmunk) has no restitution velocity threshold, so slow collisions stay elastic; the
elasticity of a contact is the product of the two shapes' values, so every shape gets 1.0.
"""

from __future__ import annotations

import numpy as np
import pymunk
from pymunk._chipmunk import lib as _cp

from datagen.scenes import States

RED = [255, 0, 0]
BLUE = [0, 0, 255]
BLACK = [0, 0, 0]


def make_space(gravity: float = 0.0) -> pymunk.Space:
    """An empty world; `gravity` points down (world y is up)."""
    space = pymunk.Space()
    space.gravity = (0.0, -gravity)
    space.damping = 1.0  # no velocity loss
    # Chipmunk lets shapes overlap by `collision_slop` (0.1 by default, a tenth of a ball radius
    # here) before pushing them apart; keep overlap and the position correction negligible.
    space.collision_slop = 1e-4
    return space


def _finish(space: pymunk.Space, body: pymunk.Body, shape: pymunk.Shape) -> pymunk.Body:
    shape.elasticity = 1.0
    shape.friction = 0.0
    space.add(body, shape)
    return body


def add_ball(space, position, velocity, radius: float, density: float = 1.0) -> pymunk.Body:
    """A dynamic disc of mass density * pi r^2."""
    body = pymunk.Body()
    body.position = tuple(position)
    shape = pymunk.Circle(body, radius)
    shape.density = density
    _finish(space, body, shape)
    body.velocity = tuple(velocity)
    return body


def add_box(
    space, position, velocity, size, angle: float = 0.0, density: float = 1.0
) -> pymunk.Body:
    """A dynamic rectangle of `size` = (w, h) centred at `position`."""
    body = pymunk.Body()
    body.position = tuple(position)
    body.angle = angle
    shape = pymunk.Poly.create_box(body, tuple(size))
    shape.density = density
    _finish(space, body, shape)
    body.velocity = tuple(velocity)
    return body


def add_static_box(space, position, size) -> pymunk.Body:
    """An immovable rectangle (a wall), returned as its static body."""
    body = pymunk.Body(body_type=pymunk.Body.STATIC)
    body.position = tuple(position)
    _finish(space, body, pymunk.Poly.create_box(body, tuple(size)))
    return body


def run(
    space: pymunk.Space,
    bodies: list[pymunk.Body],
    objects: list[dict],
    frames: int,
    frame_dt: float,
    substeps: int,
) -> States:
    """Step the world and record every body's state at each frame (frame 0 = initial state)."""
    pos, vel, ang = [], [], []
    dt = frame_dt / substeps
    space.step(0.0)  # pymunk's own checks (masses, moments) and pending additions, once
    handle = space._space
    for f in range(frames):
        if f:
            for _ in range(substeps):
                # Chipmunk's step itself: `Space.step` adds ~1.5 us of Python bookkeeping per call
                # (locks, deferred add/remove, post-step callbacks), which we never use; that
                # is a third of the physics time of a 320-step video.
                _cp.cpSpaceStep(handle, dt)
        # Plain lists, converted once: per-element numpy stores cost more than the physics.
        pos.append([tuple(b.position) for b in bodies])
        vel.append([tuple(b.velocity) for b in bodies])
        ang.append([b.angle for b in bodies])
    return States(
        np.array(pos, dtype=np.float32),
        np.array(vel, dtype=np.float32),
        np.array(ang, dtype=np.float32),
        objects,
    )


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


def add_object(space, obj: dict, position, velocity) -> pymunk.Body:
    """Add the body for an `objects` entry (rings collide as discs of their outer radius)."""
    if obj["shape"] in ("circle", "ring"):
        return add_ball(space, position, velocity, obj["radius"])
    return add_box(space, position, velocity, obj["size"])
