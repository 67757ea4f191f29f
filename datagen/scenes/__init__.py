"""The scene registry: every scene family plugs into datagen through this one table.

A scene module (one file per family, e.g. `uniform.py`) exposes two functions and knows nothing of
rendering or storage:

    sample_params(cfg: SceneSpec, index: int, rng: numpy.random.Generator) -> dict
        The initial parameters of sample `index` (JSON-serialisable). `rng` is seeded from
        (dataset seed, index) only, so a sample never depends on which worker makes it.
        Kinematic scenes use `datagen.sampling.params_at` for grid/random draws over `cfg.ranges`.
    simulate(params: dict, cfg: SceneSpec) -> States
        Runs the physics and returns per-frame states (frame k at time k * cfg.frame_dt).

and `RANGES` (the names of the parameters it draws from the config's `ranges`; another name is
refused when the config loads), and optionally `validate(cfg: SceneSpec) -> None` (raise `DatagenConfigError` on bad settings,
called once before anything is written), `count(cfg: SceneSpec) -> int | None` (the number of
samples when the scene, not the generic grid/random sampler, decides it) and
`world(params: dict, cfg: SceneSpec) -> datagen.physics.World` (the pymunk world as data: the
generator then simulates many videos per pymunk space, `datagen.physics.simulate`, bit-for-bit
as `simulate` would one by one), `feasible(cfg: SceneSpec, values: dict) -> bool array` (the
parameter combinations the scene can stage; the sampler never gives it the others) and
`CONDITION_FRAMES: int` (every moving object is fully in view in that many first frames; the
generator refuses a video that breaks the promise, and eval an eval set).

`SCENES` maps a config's `scene:` name to the module that implements it; modules are imported on
first use so a scene's dependencies cost nothing to the others.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

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


def get_scene(name: str) -> ModuleType:
    """The module implementing scene `name`; a clear error lists the known scenes."""
    if name not in SCENES:
        from datagen.config import DatagenConfigError

        raise DatagenConfigError(
            f"unknown scene '{name}'. Known scenes: {', '.join(sorted(SCENES))}"
        )
    return importlib.import_module(SCENES[name])
