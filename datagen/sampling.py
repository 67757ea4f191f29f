"""From a config to per-sample parameters: groups, grids, random draws, excluded boxes, checks.

A range is a union of closed intervals `[[lo, hi], ...]` (a velocity range with a hole is
`[[1.0, 1.25], [3.75, 4.0]]`). Grid points and random draws are spread by *measure* over the union,
so a hole gets no samples and the two sides get samples in proportion to their widths.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datagen.config import DatagenConfig, DatagenConfigError

Intervals = list[list[float]]
MARGIN = 0.05  # the authors' margin between a ball and the top / bottom of the world, x world size


@dataclass
class SceneSpec:
    """Everything a scene sees: one group of a dataset, resolved to plain Python values."""

    scene: str
    level: str
    sampling: str
    count: int
    ranges: dict[str, Intervals]
    grid: dict[str, int]
    exclude: list[dict[str, list[float]]]
    options: dict[str, Any]
    world_size: float = 10.0
    frames: int = 32
    frame_dt: float = 0.1
    substeps: int = 10
    seed: int = 0
    # The scene's `feasible(spec, values) -> bool array`: parameter combinations it can stage
    # (e.g. a collision needs room for 8 frames before contact); the others are never sampled.
    feasible: Callable[[SceneSpec, dict[str, Any]], Any] | None = None
    _grid_points: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _grid_valid: np.ndarray | None = field(default=None, repr=False)

    def option(self, key: str, default: Any) -> Any:
        """A scene option, or `default` when the config does not set it."""
        return self.options.get(key, default)


def _plain(x: Any) -> Any:
    """OmegaConf containers -> plain lists/dicts (fast attribute access in the hot loop)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(x, resolve=True) if OmegaConf.is_config(x) else x


def group_specs(cfg: DatagenConfig) -> list[SceneSpec]:
    """One `SceneSpec` per group (the top level when `groups` is empty), validated."""
    from datagen.scenes import get_scene

    feasible = get_scene(cfg.scene).feasible
    top = {
        "level": cfg.level,
        "sampling": cfg.sampling,
        "count": cfg.count,
        "ranges": _plain(cfg.ranges),
        "grid": _plain(cfg.grid),
        "exclude": _plain(cfg.exclude),
        "options": _plain(cfg.options),
    }
    raw_groups = [_plain(g) for g in cfg.groups] or [{}]
    specs = []
    for i, g in enumerate(raw_groups):
        spec = SceneSpec(
            scene=cfg.scene,
            level=g.get("level") or top["level"],
            sampling=g.get("sampling") or top["sampling"],
            count=g.get("count") or top["count"],
            ranges={**top["ranges"], **(g.get("ranges") or {})},
            grid=g.get("grid") or top["grid"],
            exclude=g.get("exclude") or top["exclude"],
            options={**top["options"], **(g.get("options") or {})},
            world_size=cfg.world_size,
            frames=cfg.frames,
            frame_dt=cfg.frame_dt,
            substeps=cfg.substeps,
            seed=cfg.seed,
            feasible=feasible,
        )
        where = f"group {i}" if cfg.groups else "config"
        _check_spec(spec, where)
        _check_ood(spec, _plain(cfg.id_ranges), list(cfg.ood), where)
        specs.append(spec)
    return specs


def _check_intervals(name: str, intervals: Any, where: str) -> None:
    ok = (
        isinstance(intervals, list)
        and intervals
        and all(isinstance(iv, list) and len(iv) == 2 for iv in intervals)
    )
    if not ok:
        raise DatagenConfigError(
            f"{where}: range '{name}' must be a list of [lo, hi] intervals, e.g. "
            f"ranges.{name}=[[1.0,4.0]], got {intervals}"
        )
    for lo, hi in intervals:
        if lo > hi:
            raise DatagenConfigError(
                f"{where}: range '{name}' has an inverted interval [{lo}, {hi}]; write [{hi}, {lo}]"
            )
        if lo < 0:
            raise DatagenConfigError(
                f"{where}: range '{name}' has a negative bound in [{lo}, {hi}]; speeds and sizes "
                f"are magnitudes (use the scene's direction options, e.g. options.flip, for sign)"
            )


def _check_spec(spec: SceneSpec, where: str) -> None:
    for name, intervals in spec.ranges.items():
        _check_intervals(name, intervals, where)
    if spec.sampling not in ("grid", "random"):
        raise DatagenConfigError(
            f"{where}: sampling must be 'grid' or 'random', got '{spec.sampling}'"
        )
    if not spec.ranges:
        return  # the scene samples its own parameters (e.g. phyre)
    if spec.sampling == "grid":
        missing = sorted(set(spec.ranges) - set(spec.grid))
        extra = sorted(set(spec.grid) - set(spec.ranges))
        if missing or extra:
            raise DatagenConfigError(
                f"{where}: sampling=grid needs a grid size for every range and no other: "
                f"missing grid.{missing}, grid without range {extra}"
            )
        for name, n in spec.grid.items():
            if n < 1:
                raise DatagenConfigError(f"{where}: grid.{name}={n} must be >= 1")
        size = grid_count(spec)
        if spec.count not in (0, size):
            raise DatagenConfigError(
                f"{where}: count={spec.count} but the grid has {size} points; drop count or "
                f"change the grid sizes"
            )
        if size == 0:
            raise DatagenConfigError(
                f"{where}: `exclude` and the scene's feasible region ({_feasible_doc(spec)}) "
                "leave no grid point; change the ranges"
            )
        spec.count = size
    elif spec.count < 1:
        raise DatagenConfigError(f"{where}: sampling=random needs count >= 1 (e.g. count=1000)")
    elif spec.feasible is not None:  # refuse an empty region now, not after 10,000 redraws
        u = np.random.default_rng(0).random((4096, len(spec.ranges)))
        values = {n: union_points(iv, u[:, i]) for i, (n, iv) in enumerate(spec.ranges.items())}
        if not np.any(spec.feasible(spec, values)):
            raise DatagenConfigError(
                f"{where}: the scene cannot stage any of ranges {spec.ranges} "
                f"(it needs {_feasible_doc(spec)}); change the ranges"
            )
    for box in spec.exclude:
        unknown = sorted(set(box) - set(spec.ranges))
        if unknown:
            raise DatagenConfigError(f"{where}: exclude box names unknown parameters {unknown}")


def _overlaps(a: Intervals, b: Intervals) -> bool:
    return any(lo1 < hi2 and lo2 < hi1 for lo1, hi1 in a for lo2, hi2 in b)


def _check_ood(spec: SceneSpec, id_ranges: dict, ood: list[str], where: str) -> None:
    for name in ood:
        if name not in spec.ranges or name not in id_ranges:
            raise DatagenConfigError(
                f"{where}: ood lists '{name}' but ranges.{name} or id_ranges.{name} is not set"
            )
        _check_intervals(name, id_ranges[name], f"{where} id_ranges")
        if _overlaps(spec.ranges[name], id_ranges[name]):
            raise DatagenConfigError(
                f"{where}: OOD range {name}={spec.ranges[name]} overlaps the ID range "
                f"{id_ranges[name]}; an OOD set must lie outside the training range"
            )


def union_points(intervals: Intervals, u: np.ndarray) -> np.ndarray:
    """Map fractions `u` in [0, 1] to points of the union of `intervals`, by measure."""
    lengths = np.array([hi - lo for lo, hi in intervals], dtype=np.float64)
    total = lengths.sum()
    if total == 0:  # all intervals are points: spread over them evenly
        pts = np.array([lo for lo, _ in intervals])
        return pts[np.minimum((u * len(pts)).astype(int), len(pts) - 1)]
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    s = np.asarray(u, dtype=np.float64) * total
    k = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(intervals) - 1)
    starts = np.array([lo for lo, _ in intervals])
    return starts[k] + (s - cum[k])


def union_point(intervals: Intervals, u: float) -> float:
    """`union_points` for one fraction, in plain Python floats (the per-sample hot path; the
    same float64 operations, so the same value, as `union_points`)."""
    if len(intervals) >= 8:  # numpy sums 8 or more in another order: let it
        return float(union_points(intervals, np.array([u]))[0])
    total, cum = 0.0, [0.0]
    for lo, hi in intervals:
        total += hi - lo
        cum.append(cum[-1] + (hi - lo))
    if total == 0:
        return float(intervals[min(int(u * len(intervals)), len(intervals) - 1)][0])
    s = u * total
    k = min(max(bisect.bisect_right(cum, s) - 1, 0), len(intervals) - 1)
    return float(intervals[k][0] + (s - cum[k]))


def grid_axis(intervals: Intervals, n: int) -> np.ndarray:
    """`n` points spread evenly by measure over the union, both ends included (linspace)."""
    return union_points(intervals, np.linspace(0.0, 1.0, n) if n > 1 else np.array([0.5]))


def _in_box(values: dict[str, np.ndarray], box: dict[str, list[float]]) -> np.ndarray:
    inside = np.array(True)
    for name, (lo, hi) in box.items():
        inside = inside & (values[name] >= lo) & (values[name] <= hi)
    return inside


def _grid_axes(spec: SceneSpec) -> dict[str, np.ndarray]:
    """Per-parameter grid axes (cached on the spec)."""
    if not spec._grid_points:
        spec._grid_points = {n: grid_axis(spec.ranges[n], k) for n, k in spec.grid.items()}
    return spec._grid_points


def _grid_valid(spec: SceneSpec) -> np.ndarray:
    """Flat indices of the grid points outside every `exclude` box (cached on the spec)."""
    if spec._grid_valid is None:
        axes = _grid_axes(spec)
        names = list(spec.grid)
        shape = tuple(spec.grid[n] for n in names)
        keep = np.ones(shape, dtype=bool)
        # Each axis broadcast along its own dimension: (n1, 1, ...), (1, n2, ...), ...
        values = {
            n: axes[n].reshape([-1 if j == i else 1 for j in range(len(names))])
            for i, n in enumerate(names)
        }
        for box in spec.exclude:
            keep &= ~np.broadcast_to(_in_box(values, box), shape)
        if spec.feasible is not None:
            keep &= np.broadcast_to(spec.feasible(spec, values), shape)
        spec._grid_valid = np.flatnonzero(keep.ravel())
    return spec._grid_valid


def grid_count(spec: SceneSpec) -> int:
    """Number of grid points left after `exclude` and the scene's feasible region."""
    if not spec.exclude and spec.feasible is None:
        return math.prod(spec.grid.values())
    return len(_grid_valid(spec))


def params_at(spec: SceneSpec, index: int, rng: np.random.Generator) -> dict[str, float]:
    """The values of the ranged parameters for sample `index` of this group.

    grid: the `index`-th point of the product of per-parameter linspaces (C order, the order
    of `grid`), skipping excluded boxes and infeasible points. random: uniform by measure over
    each union, redrawn (from the same per-sample `rng`) while inside an excluded box or
    infeasible.
    """
    if spec.sampling == "grid":
        names = list(spec.grid)
        axes = _grid_axes(spec)
        filtered = spec.exclude or spec.feasible is not None
        flat = int(_grid_valid(spec)[index]) if filtered else index
        coords = np.unravel_index(flat, tuple(spec.grid[n] for n in names))
        return {n: float(axes[n][c]) for n, c in zip(names, coords)}
    names = list(spec.ranges)
    for _ in range(10_000):
        u = rng.random(len(names)).tolist()
        out = {n: union_point(spec.ranges[n], u[i]) for i, n in enumerate(names)}
        if not any(bool(_in_box(out, box)) for box in spec.exclude) and (
            spec.feasible is None or bool(spec.feasible(spec, out))
        ):
            return out
    raise DatagenConfigError(
        f"`exclude` and the scene's feasible region ({_feasible_doc(spec)}) cover (almost) all of "
        f"the parameter space {spec.ranges}; change the ranges"
    )


def _feasible_doc(spec: SceneSpec) -> str:
    """The first line of the scene's `feasible` docstring (what it requires), for errors."""
    doc = (spec.feasible.__doc__ or "") if spec.feasible is not None else ""
    return doc.strip().split("\n")[0] or "none"


def start_in_view(rng: np.random.Generator, r: float, v: float, spec: SceneSpec) -> float:
    """The authors' start of a ball moving right at `v`: x uniform in [r, world - k dt v - r]
    (fully in view, and in view for k = `min_frames_in_view` (24) frames); when that is empty
    (fast balls), x in [r, r + U(0, margin)], margin = 0.05 world."""
    k = spec.option("min_frames_in_view", 24)
    hi = spec.world_size - k * spec.frame_dt * v - r
    if hi < r:
        hi = r + float(rng.uniform(0.0, MARGIN * spec.world_size))
    return float(rng.uniform(r, hi))


def height_in_view(rng: np.random.Generator, r: float, spec: SceneSpec) -> float:
    """The authors' height of a horizontal motion: U(r + margin, world - margin - r)."""
    m = MARGIN * spec.world_size
    return float(rng.uniform(r + m, spec.world_size - m - r))
