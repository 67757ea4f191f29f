"""The scene registry and the scene interface: every scene family plugs into datagen through them.

A scene is a module (one file or package per family, e.g. `uniform.py`) that knows nothing of
storage and satisfies the `Scene` protocol below: `RANGES`, `CONDITION_FRAMES`, `sample_params`
and `simulate` always; the optional capabilities (`validate`, `count`, `feasible`, `world`,
`render`) are a function or None, declared either way, so the generator asks the scene what it
has instead of probing it.

`SCENES` maps a config's `scene:` name to the module that implements it; modules are imported on
first use so a scene's dependencies cost nothing to the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

if TYPE_CHECKING:
    from datagen.physics import World
    from datagen.sampling import SceneSpec

SCENES: dict[str, str] = {
    "uniform": "datagen.scenes.uniform",
    "collision": "datagen.scenes.collision",
    "parabola": "datagen.scenes.parabola",
    "spatial_composition": "datagen.scenes.composition",
    "temporal_composition": "datagen.scenes.composition",
    "phyre": "datagen.scenes.phyre",
}


@dataclass
class States:
    """What a simulation returns: one row per frame, one column per object.

    positions:  (T, N, 2) float32, world units, centre of mass, y up
    velocities: (T, N, 2) float32, world units per second
    angles:     (T, N) float32, radians, counter-clockwise
    objects:    N dicts (the `objects` column of ARCHITECTURE.md): `type`, `shape`, `colour`,
                `radius` | `size` | `inner_radius` | `vertices`, `dynamic`
    """

    positions: np.ndarray
    velocities: np.ndarray
    angles: np.ndarray
    objects: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        t, n = self.positions.shape[:2]
        if (
            self.velocities.shape != (t, n, 2)
            or self.angles.shape != (t, n)
            or len(self.objects) != n
        ):
            raise ValueError(
                f"inconsistent States: positions {self.positions.shape}, velocities "
                f"{self.velocities.shape}, angles {self.angles.shape}, {len(self.objects)} objects"
            )


class Scene(Protocol):
    """What datagen needs of a scene family (a module; see `SCENES`)."""

    RANGES: tuple[str, ...]  # the parameters drawn from the config's `ranges` (others refused)
    # Every moving object is fully in view in this many first frames (0: no promise); the
    # generator refuses a video that breaks it, and eval an eval set.
    CONDITION_FRAMES: int
    # Raise `DatagenConfigError` on bad settings, once before anything is written.
    validate: Callable[[SceneSpec], None] | None
    # The number of samples, when the scene decides it rather than the grid/random sampler.
    count: Callable[[SceneSpec], int] | None
    # (spec, {name: values}) -> bool array: the parameter combinations the scene can stage; the
    # sampler never gives it the others.
    feasible: Callable[[SceneSpec, dict[str, np.ndarray]], np.ndarray] | None
    # The pymunk world as data: the generator then simulates many videos per pymunk space
    # (`datagen.physics.simulate`), bit for bit as `simulate` would one by one.
    world: Callable[[dict, SceneSpec], World] | None
    # Its own renderer: (states, world_size, resolution, out, spec) -> frames (T, H, W, 3),
    # drawn into `out`, a (T, 3, H, W) uint8 buffer; None: the shared `datagen.render.draw`.
    render: Callable[..., np.ndarray] | None

    def sample_params(self, spec: SceneSpec, index: int, rng: np.random.Generator) -> dict:
        """The initial parameters of sample `index` (JSON-serialisable). `rng` is seeded from
        (dataset seed, index) only, so a sample never depends on which worker makes it."""
        ...

    def simulate(self, params: dict, spec: SceneSpec) -> States:
        """Run the physics: per-frame states (frame k at time k * spec.frame_dt)."""
        ...


def get_scene(name: str) -> Scene:
    """The module implementing scene `name`; a clear error lists the known scenes."""
    if name not in SCENES:
        from datagen.config import DatagenConfigError

        raise DatagenConfigError(
            f"unknown scene '{name}'. Known scenes: {', '.join(sorted(SCENES))}"
        )
    return cast(Scene, importlib.import_module(SCENES[name]))
