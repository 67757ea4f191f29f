"""Eval sets -> batches: frames stacked for the model, true ball states stacked for the scorer."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from phyworld.cli import UserError

# The parser colour of each ball colour the kinematic scenes draw (datagen.physics.RED / BLUE).
PARSER_COLOUR = {(255, 0, 0): "red", (0, 0, 255): "blue"}


class EvalSetError(UserError, ValueError):
    """An eval set that cannot be scored as configured; the message says how to fix it."""


def iter_batches(path: str, batch_size: int, max_videos: int = 0) -> Iterator[list[dict[str, Any]]]:
    """Samples of the dataset at `path` (local or s3://) in index order, `batch_size` at a time."""
    from phyworld.data.shards import iter_samples

    samples = iter_samples(path)
    if max_videos > 0:
        samples = itertools.islice(samples, max_videos)
    while batch := list(itertools.islice(samples, batch_size)):
        yield batch


def stack_frames(batch: list[dict[str, Any]]) -> np.ndarray:
    """(B, T, H, W, 3) uint8 from a batch of samples."""
    shapes = {s["frames"].shape for s in batch}
    if len(shapes) != 1:
        raise EvalSetError(f"videos of one eval set must share a shape, got {sorted(shapes)}")
    return np.stack([s["frames"] for s in batch])


@dataclass
class KinematicTruth:
    """The simulator's states of a batch of kinematic videos (one scenario, same balls)."""

    scenario: str
    colours: tuple[str, ...]  # parser colour of each ball, in object order
    position: np.ndarray  # (B, T, N, 2) world units
    velocity: np.ndarray  # (B, T, N, 2) world units / s
    radius: np.ndarray  # (B, N) world units
    world_size: float
    frame_dt: float


def check_condition_in_view(
    truth: KinematicTruth, batch: list[dict[str, Any]], name: str, cond_frames: int
) -> None:
    """Every ball fully in view in the condition frames (no model can know a hidden ball's
    speed), where the eval set's scene promises it; else an error naming the set and sample."""
    from datagen.scenes import get_scene
    from eval.velocity import in_view

    if not get_scene(truth.scenario).CONDITION_FRAMES:
        return
    shown = in_view(truth.position[:, :cond_frames], truth.radius, truth.world_size).all((1, 2))
    if not shown.all():
        bad = batch[int(np.argmin(shown))]
        raise EvalSetError(
            f"eval set '{name}': sample {bad['id']} has a ball partly or wholly outside the "
            f"frame in its first {cond_frames} (condition) frames, so no model can know its "
            "speed; it was made by an older datagen: regenerate the set with "
            "`python -m datagen configs/data/<its config>.yaml overwrite=true`"
        )


def kinematic_truth(batch: list[dict[str, Any]], name: str) -> KinematicTruth:
    """Stack the states of a batch; a set without per-frame states or balls is a clear error."""
    first = batch[0]
    positions = first.get("positions")
    if positions is None or np.size(positions) == 0:
        raise EvalSetError(
            f"eval set '{name}' has no per-frame object states (`positions` is empty); the "
            "velocity error needs them: regenerate it with `python -m datagen` (it stores states)"
        )
    objects = first["objects"]
    colours = []
    for obj in objects:
        colour = PARSER_COLOUR.get(tuple(int(c) for c in obj.get("colour", ())))
        if obj.get("shape") != "circle" or colour is None:
            raise EvalSetError(
                f"eval set '{name}': the kinematic parser reads red (255,0,0) and blue (0,0,255) "
                f"circles, got {obj.get('shape')} {obj.get('colour')}; score this set with "
                "kind=combinatorial instead"
            )
        colours.append(colour)
    params = first["params"]
    return KinematicTruth(
        scenario=first["scenario"],
        colours=tuple(colours),
        position=np.stack([s["positions"] for s in batch]).astype(np.float64),
        velocity=np.stack([s["velocities"] for s in batch]).astype(np.float64),
        radius=np.array([[o["radius"] for o in s["objects"]] for s in batch], np.float64),
        world_size=float(params["world_size"]),
        frame_dt=float(params["frame_dt"]),
    )
