"""Every datagen setting, with its default, in one place.

`python -m datagen CONFIG.yaml key=value ...` builds a `DatagenConfig` (see
`phyworld.config.load_config`). A dataset is a concatenation of *groups* (homogeneous
sub-populations: e.g. red balls then blue squares); with no `groups` the top level is the one group.
Each group inherits the top-level `count`, `ranges`, `grid`, `exclude`, `options` and `level`, and
overrides what it sets (`ranges` and `options` key by key). `load_config` checks the Enum
and `bounded` fields, and `DatagenConfig.__post_init__` the range names against the scene's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from datagen.scenes import SCENES
from phyworld.config import ConfigError, bounded

# Keys that say how a run is executed, not what the dataset holds: left out of the saved
# config.yaml so that the same dataset is byte-identical whatever the worker count.
RUN_KEYS = ("workers", "worker", "mode", "overwrite", "progress")


class DatagenConfigError(ConfigError):
    """A datagen config that cannot produce a valid dataset; the message says how to fix it."""


# the scenes' names (datagen.scenes.SCENES)
SceneName = StrEnum("SceneName", {name: name for name in SCENES}, module=__name__)


class Split(StrEnum):
    train = "train"
    eval = "eval"


class Sampling(StrEnum):
    grid = "grid"  # linspace per parameter (product)
    random = "random"  # uniform draws


class GroupSampling(StrEnum):
    """A group's sampling: the top level's unless set."""

    inherit = ""
    grid = "grid"
    random = "random"


class RenderStyle(StrEnum):
    aa = "aa"  # area coverage (anti-aliased)
    paper = "paper"  # the authors' point-sampled soft edge


class Mode(StrEnum):
    all = "all"  # generate + merge
    generate = "generate"  # this worker's parts
    merge = "merge"


@dataclass
class GroupConfig:
    """One sub-population of a dataset; unset fields inherit the top level."""

    level: str = ""
    count: int = bounded(0, ge=0)
    sampling: GroupSampling = GroupSampling.inherit
    ranges: dict[str, list[list[float]]] = field(default_factory=dict)
    grid: dict[str, int] = field(default_factory=dict)
    exclude: list[dict[str, list[float]]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DatagenConfig:
    """A dataset: what to simulate, how to render it, where to write it."""

    output: str = "???"  # local directory or s3://bucket/prefix
    name: str = ""  # dataset name used in sample ids; default: the last component of `output`
    scene: SceneName = SceneName.uniform
    split: Split = Split.train
    level: str = "id"  # id | r_out | v_out | both_out | in_template | out_template | free text
    seed: int = 0

    # Parameter space (kinematic scenes). A range is a union of [lo, hi] intervals.
    sampling: Sampling = Sampling.grid
    count: int = bounded(0, ge=0)  # random: number of samples; grid: 0 or exactly the grid size
    ranges: dict[str, list[list[float]]] = field(default_factory=dict)
    grid: dict[str, int] = field(default_factory=dict)  # parameter -> points (sampling=grid)
    exclude: list[dict[str, list[float]]] = field(default_factory=list)  # boxes removed
    options: dict[str, Any] = field(default_factory=dict)  # scene-specific: colour, shape, ...
    groups: list[GroupConfig] = field(default_factory=list)

    # OOD checks: every parameter named in `ood` must lie outside its `id_ranges` interval.
    id_ranges: dict[str, list[list[float]]] = field(default_factory=dict)
    ood: list[str] = field(default_factory=list)

    # Simulation and rendering.
    world_size: float = bounded(10.0, gt=0)
    frames: int = bounded(32, ge=1)
    frame_dt: float = bounded(0.1, gt=0)  # seconds between frames
    substeps: int = bounded(10, ge=1)  # physics steps per frame (0.01 s steps, as the reference)
    resolution: int = bounded(128, ge=1)  # H = W pixels
    render: RenderStyle = RenderStyle.aa

    # Storage.
    part_size: int = bounded(5000, ge=1)  # samples per part: the unit of parallel, idempotent work
    shard_size_limit: int = bounded(1 << 26, ge=1)  # bytes per MDS shard
    zstd_level: int = 1  # of the frame column; higher levels gain ~1% on these crops, cost more

    # Execution (not saved with the dataset).
    mode: Mode = Mode.all
    workers: int = bounded(0, ge=0)  # n; 0: SLURM_ARRAY_TASK_COUNT, else 1
    worker: int = bounded(
        -1, ge=-1
    )  # k; -1: SLURM_ARRAY_TASK_ID (minus SLURM_ARRAY_TASK_MIN), else 0
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        """Every range names a parameter the scene draws (another one would be drawn and never
        used: a misspelt `ranges.speed` silently kept the default speeds)."""
        from datagen.scenes import get_scene

        known = get_scene(self.scene).RANGES
        sections = [("ranges", self.ranges)]
        sections += [(f"groups.{i}.ranges", g.ranges) for i, g in enumerate(self.groups)]
        for where, ranges in sections:
            unknown = sorted(set(ranges) - set(known))
            if unknown:
                valid = ", ".join(known) or "none (it places its objects itself)"
                raise DatagenConfigError(
                    f"unknown range name '{where}.{unknown[0]}': scene '{self.scene}' draws "
                    f"these parameters from ranges: {valid}"
                )
