"""The datagen pipeline: config -> plan -> (simulate -> render -> encode) per sample -> parts -> merge.

Determinism: sample `i` depends only on (config, seed, i): its random generator is seeded from
(seed, i), and parts are fixed ranges of `part_size` indices, so any worker count produces the
same bytes. Worker k of n makes parts k, k + n, k + 2n, ... and skips those already finished.
"""

from __future__ import annotations

import bisect
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml
from omegaconf import OmegaConf
from tqdm import tqdm

from datagen import physics
from datagen.config import RUN_KEYS, DatagenConfig, DatagenConfigError
from datagen.render import STYLES, Canvas, draw, first_hidden
from datagen.sampling import SceneSpec, group_specs
from datagen.scenes import Scene, States, get_scene
from phyworld import storage
from phyworld.config import to_dict
from phyworld.data import shards
from phyworld.data.codec import encode_frames
from phyworld.data.schema import to_json

BATCH = 32  # videos made together (simulated in shared pymunk spaces, painted on one canvas)


@dataclass
class Plan:
    """What a dataset holds: its groups, where each starts, and how it is cut into parts."""

    cfg: DatagenConfig
    name: str
    scene: Scene
    specs: list[SceneSpec]
    starts: np.ndarray  # first global index of each group
    count: int
    num_parts: int
    config_yaml: str

    def part_range(self, k: int) -> range:
        lo = k * self.cfg.part_size
        return range(lo, min(lo + self.cfg.part_size, self.count))


def dataset_yaml(cfg: DatagenConfig, name: str) -> str:
    """The config as saved with the dataset: what it holds, not where it is or how it was run
    (so a dataset is byte-identical whatever the worker count and location)."""
    data = to_dict(cfg)
    for key in (*RUN_KEYS, "output"):
        data.pop(key, None)
    data["name"] = name
    return yaml.safe_dump(data, sort_keys=True)


def make_plan(cfg: DatagenConfig) -> Plan:
    """Validate the config (raising `DatagenConfigError` with the fix) and lay out the dataset."""
    if cfg.render not in STYLES:
        raise DatagenConfigError(f"render must be one of {STYLES}, got '{cfg.render}'")
    if cfg.split not in ("train", "eval"):
        raise DatagenConfigError(f"split must be 'train' or 'eval', got '{cfg.split}'")
    if cfg.mode not in ("all", "generate", "merge"):
        raise DatagenConfigError(f"mode must be all, generate or merge, got '{cfg.mode}'")
    for key in ("frames", "substeps", "resolution", "part_size"):
        if getattr(cfg, key) < 1:
            raise DatagenConfigError(f"{key} must be >= 1, got {getattr(cfg, key)}")
    if cfg.world_size <= 0 or cfg.frame_dt <= 0:
        raise DatagenConfigError("world_size and frame_dt must be > 0")
    scene = get_scene(cfg.scene)
    specs = group_specs(cfg)
    counts = []
    for spec in specs:
        if scene.validate is not None:
            scene.validate(spec)
        n = spec.count if scene.count is None else scene.count(spec)
        if n < 1:
            raise DatagenConfigError(
                f"scene '{cfg.scene}' group has no samples: set `count` (random) or `grid` sizes"
            )
        counts.append(n)
    name = cfg.name or cfg.output.rstrip("/").rsplit("/", 1)[-1]
    total = sum(counts)
    return Plan(
        cfg=OmegaConf.to_object(cfg) if OmegaConf.is_config(cfg) else cfg,  # plain: fast access
        name=name,
        scene=scene,
        specs=specs,
        starts=np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64),
        count=total,
        num_parts=math.ceil(total / cfg.part_size),
        config_yaml=dataset_yaml(cfg, name),
    )


def make_samples(plan: Plan, indices: Sequence[int]) -> list[dict[str, Any]]:
    """Samples `indices` of the dataset as MDS rows (see `phyworld.data.schema.COLUMNS`).

    Scenes that describe their physics as a `world` are simulated together (`physics.simulate`:
    one pymunk step advances many videos), bit-for-bit as each would be alone."""
    cfg = plan.cfg
    drafts, starts = [], plan.starts.tolist()
    for index in indices:
        g = bisect.bisect_right(starts, index) - 1  # the group holding `index`
        spec = plan.specs[g]
        rng = np.random.default_rng([cfg.seed, index])
        drafts.append((index, g, spec, plan.scene.sample_params(spec, index - starts[g], rng)))
    if plan.scene.world is not None:
        worlds = [plan.scene.world(params, spec) for _, _, spec, params in drafts]
        states = physics.simulate(worlds, cfg.frames, cfg.frame_dt)
    else:
        states = [plan.scene.simulate(params, spec) for _, _, spec, params in drafts]
    for (index, _, _, params), st in zip(drafts, states):
        _check_condition_in_view(plan, index, params, st)
    # One canvas (or frame buffer, for scenes that render themselves) for all: each row keeps only
    # its encoded bytes, and reusing the memory spares a fresh allocation's page faults per video.
    if plan.scene.render is not None:
        canvas = np.empty((cfg.frames, 3, cfg.resolution, cfg.resolution), np.uint8)
    else:
        canvas = Canvas(cfg.frames, cfg.resolution)
    return [_row(plan, *draft, st, canvas) for draft, st in zip(drafts, states)]


def _check_condition_in_view(plan: Plan, index: int, params: dict, states: States) -> None:
    """A scene that promises it (`CONDITION_FRAMES` = c) shows every moving object fully in its
    first c frames, the model's condition: a video that breaks it is an error, not data."""
    frames = plan.scene.CONDITION_FRAMES
    hidden = first_hidden(states, plan.cfg.world_size, frames) if frames else None
    if hidden is not None:
        frame, obj = hidden
        raise DatagenConfigError(
            f"dataset '{plan.name}': sample {index} ({to_json(params)}) shows object {obj} "
            f"({states.objects[obj]['type']}) only in part at condition frame {frame} (scene "
            f"'{plan.cfg.scene}' keeps every moving object fully in view in the first {frames} "
            "frames): its placement breaks that; fix the scene's sample_params or the ranges"
        )


def make_sample(plan: Plan, index: int) -> dict[str, Any]:
    """Sample `index` of the dataset as an MDS row."""
    return make_samples(plan, [index])[0]


def _row(
    plan: Plan,
    index: int,
    g: int,
    spec: SceneSpec,
    params: dict,
    states: States,
    canvas: Canvas | np.ndarray,
) -> dict[str, Any]:
    """Render (on `canvas`, cleared first; a (T, 3, H, W) buffer for scenes with their own
    renderer) and encode one simulated sample into its MDS row."""
    cfg = plan.cfg
    if plan.scene.render is not None:  # scenes with their own renderer (e.g. phyre)
        frames = plan.scene.render(
            states, world_size=cfg.world_size, resolution=cfg.resolution, out=canvas, spec=spec
        )
        encoded = encode_frames(frames, cfg.zstd_level)
    else:
        canvas = draw(states, cfg.resolution, cfg.world_size, cfg.render, canvas)
        encoded = encode_frames(canvas.frames(), cfg.zstd_level, canvas.boxes())
    params = {
        **params,
        "world_size": cfg.world_size,
        "frame_dt": cfg.frame_dt,
        "seed": cfg.seed,
        "index": index,
        "group": g,
        "render": cfg.render,
    }
    return {
        "id": f"{plan.name}-{index:09d}",
        "scenario": cfg.scene,
        "split": cfg.split,
        "level": spec.level,
        "frames": encoded,
        "positions": states.positions,
        "velocities": states.velocities,
        "angles": states.angles,
        "objects": to_json(states.objects).encode(),  # pre-encoded: canonical bytes
        "params": to_json(params).encode(),
    }


def worker_identity(cfg: DatagenConfig) -> tuple[int, int]:
    """(k, n) from the config, else from a Slurm job array, else (0, 1)."""
    n = cfg.workers or int(os.environ.get("SLURM_ARRAY_TASK_COUNT", 1))
    if cfg.worker >= 0:
        k = cfg.worker
    elif "SLURM_ARRAY_TASK_ID" in os.environ:
        k = int(os.environ["SLURM_ARRAY_TASK_ID"]) - int(os.environ.get("SLURM_ARRAY_TASK_MIN", 0))
    else:
        k = 0
    if not 0 <= k < n:
        raise DatagenConfigError(f"worker={k} must be in [0, workers={n})")
    return k, n


def _prepare_root(plan: Plan, k: int, n: int) -> None:
    """Refuse a root holding other files, a complete dataset or one of a different config
    (unless overwrite: then delete the dataset's files), then record the config."""
    cfg, root = plan.cfg, plan.cfg.output
    storage.check_reachable(root)
    if cfg.overwrite:
        shards.check_deletable(root)  # before listing: a bucket or `/` is refused as such
    existing = shards.dataset_files(root)
    config_url = storage.join(root, shards.CONFIG)
    if cfg.overwrite:
        if cfg.mode == "all" and n == 1:
            stale = existing  # one process makes everything: start from nothing
        else:  # a job array: each worker clears the dataset files and redoes its own parts
            stale = [
                name
                for name in existing
                if name in (shards.MANIFEST, shards.INDEX, shards.CONFIG)
                or _part_of(name) >= plan.num_parts  # of an earlier, larger dataset
            ]
        shards.delete_dataset_files(root, stale)
    elif shards.MANIFEST in existing:
        raise DatagenConfigError(
            f"{root} already holds a complete dataset; pass overwrite=true to regenerate it, or "
            f"choose another output"
        )
    elif shards.CONFIG in existing and storage.read_text(config_url) != plan.config_yaml:
        raise DatagenConfigError(
            f"{root} holds parts of a dataset made with a different config; pass overwrite=true "
            f"to replace it, or choose another output"
        )
    storage.write_text(config_url, plan.config_yaml)
    shards.clean_stale_temps(root, range(k, plan.num_parts, n))


def _part_of(name: str) -> int:
    """K of a file under parts/part_K/ (-1 for other files)."""
    match = re.match(r"parts/part_(\d+)/", name)
    return int(match[1]) if match else -1


def generate_parts(plan: Plan, k: int, n: int) -> dict[str, float]:
    """Make this worker's unfinished parts; returns counts, bytes and time for the summary."""
    cfg, root = plan.cfg, plan.cfg.output
    mine = range(k, plan.num_parts, n)
    todo = [p for p in mine if cfg.overwrite or not shards.part_done(root, p, plan.config_yaml)]
    total = sum(len(plan.part_range(p)) for p in todo)
    skipped = len(mine) - len(todo)
    if skipped:
        print(f"worker {k}/{n}: {skipped} part(s) already finished, skipped", file=sys.stderr)
    made, nbytes, start = 0, 0, time.perf_counter()
    with tqdm(total=total, desc=f"worker {k}/{n}", unit="video", disable=not cfg.progress) as bar:
        for p in todo:
            idx = plan.part_range(p)
            writer = shards.PartWriter(root, p, idx.start, cfg.shard_size_limit, plan.config_yaml)
            try:
                for lo in range(0, len(idx), BATCH):
                    batch = idx[lo : lo + BATCH]
                    for sample in make_samples(plan, batch):
                        writer.write(sample)
                    bar.update(len(batch))
                done = writer.publish()
            except BaseException:
                writer.abort()
                raise
            made += done["count"]
            nbytes += sum(s["bytes"] for s in done["shards"].values())
    return {"videos": made, "bytes": nbytes, "seconds": time.perf_counter() - start}


def run(cfg: DatagenConfig) -> dict[str, Any]:
    """Run `mode` for this worker; returns a summary (also printed)."""
    plan = make_plan(cfg)
    k, n = worker_identity(cfg)
    summary: dict[str, Any] = {"dataset": cfg.output, "count": plan.count, "parts": plan.num_parts}
    if cfg.mode in ("all", "generate"):
        _prepare_root(plan, k, n)
        stats = generate_parts(plan, k, n)
        rate = stats["videos"] / max(stats["seconds"], 1e-9)
        print(
            f"worker {k}/{n}: {stats['videos']} videos, {stats['bytes'] / 1e9:.3f} GB, "
            f"{rate:.0f} videos/s, {stats['bytes'] / max(stats['videos'], 1) / 1024:.1f} KiB/video",
            file=sys.stderr,
        )
        summary.update(stats)
    finished = cfg.mode == "all" and all(
        shards.part_done(cfg.output, p, plan.config_yaml) for p in range(plan.num_parts)
    )
    if cfg.mode == "all" and not finished:
        print(
            f"worker {k}/{n}: other workers' parts are not finished (or were made with another "
            f"config): the last worker to finish merges",
            file=sys.stderr,
        )
    if cfg.mode == "merge" or finished:
        if cfg.mode == "merge":
            storage.check_reachable(cfg.output)
            url = storage.join(cfg.output, shards.CONFIG)
            if not storage.exists(url) or storage.read_text(url) != plan.config_yaml:
                raise DatagenConfigError(
                    f"{cfg.output}/config.yaml is missing or differs from this config: merge with "
                    f"the same config (and overrides) the workers used"
                )
        manifest = shards.merge(cfg.output, plan.num_parts, plan.config_yaml)
        print(
            f"dataset {cfg.output}: {manifest['count']} videos, {manifest['bytes'] / 1e9:.3f} GB "
            f"in {plan.num_parts} part(s), complete",
            file=sys.stderr,
        )
        summary["manifest"] = manifest
    return summary
