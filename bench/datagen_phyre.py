"""Combinatorial (PHYRE-like) videos per second per core at 256 x 256 x 32, end to end.

    python bench/datagen_phyre.py [--videos 70] [--resolution 256] [--paper-videos 70]

End to end = placement + physics + rendering + the lossless frame encoding the dataset stores
(`phyworld.data.codec.encode_frames`), one process, timed in CPU seconds of this process (other jobs
on the machine still slow it through shared caches and memory bandwidth: compare figures taken
at similar load). Every video gets its own layout (the worst case); a second figure gives the
placement cost when videos share layouts as the paper configs do (100 per template). Prints each
stage's share, then the ratio against a baseline measured in the same run on the same scenes: the
same placement, physics and encoding with a full-frame renderer (every pixel of every frame
tested against every object, the authors' approach), so only the renderer differs.

Paper mode (`options.placement=paper`, `render_scale=2`: the authors' placement, drawn at twice
the resolution and block-averaged, configs/data/phyre_paper_*.yaml) is timed on as many videos
in the same run and printed with its ratio to the default mode."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

# Run as `python bench/datagen_phyre.py`, this folder comes first on sys.path and its
# `datagen.py` would shadow the `datagen` package: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402

from datagen.sampling import SceneSpec  # noqa: E402
from datagen.scenes import phyre  # noqa: E402
from phyworld.data.codec import encode_frames  # noqa: E402
from phyworld.data.pixels import world_to_pixel  # noqa: E402

ZSTD_LEVEL = 1  # as configs/data/phyre_base.yaml


def full_frame_render(states, world_size: float, resolution: int) -> np.ndarray:
    """The baseline: each frame, each object tested on the whole pixel grid."""
    t_count = states.positions.shape[0]
    frames = np.full((t_count, resolution, resolution, 3), 255, dtype=np.uint8)
    jj, ii = np.mgrid[0:resolution, 0:resolution] + 0.5
    for k, body in enumerate(phyre.render_bodies(states.objects)):
        for t in range(t_count):
            (x, y), a = states.positions[t, k], states.angles[t, k]
            c, s = np.cos(a), np.sin(a)
            rot = np.array([[c, -s], [s, c]])
            mask = np.zeros((resolution, resolution), dtype=bool)
            for cx, cy, r in body.circles:
                cu, cv = world_to_pixel(rot @ (cx, cy) + (x, y), world_size, resolution)
                rp = r * resolution / world_size
                mask |= (ii - cu) ** 2 + (jj - cv) ** 2 <= rp * rp
            for poly in body.polygons:
                uv = world_to_pixel(poly @ rot.T + (x, y), world_size, resolution)
                p, q = uv, np.roll(uv, -1, axis=0)
                inside = np.ones_like(mask)
                for (pu, pv), (qu, qv) in zip(p, q):
                    inside &= (qu - pu) * (jj - pv) - (qv - pv) * (ii - pu) <= 0
                mask |= inside
            frames[t][mask] = body.colour
    return frames


def shared_layout_placement(videos: int) -> float:
    """CPU seconds per video of placement when a template's videos share 100 layouts (the paper
    configs): steady state, every layout already placed once, so only red balls are placed."""
    spec = SceneSpec(
        scene="phyre", level="in_template", sampling="random", count=0, ranges={}, grid={},
        exclude=[], world_size=phyre.objects.WORLD_SIZE, frames=32, frame_dt=1 / 3, substeps=20, seed=0,
        options={"templates": "train60", "videos_per_template": 10**6, "layouts_per_template": 100},
    )  # fmt: skip
    for i in range(100):  # place the 100 layouts of template 0
        phyre.sample_params(spec, i, np.random.default_rng([0, i]))
    t0 = time.process_time()
    for i in range(100, 100 + videos):
        phyre.sample_params(spec, i, np.random.default_rng([0, i]))
    return (time.process_time() - t0) / videos


def timed_videos(spec: SceneSpec, videos: int, resolution: int, buffer: np.ndarray, keep: int = 0):
    """CPU seconds per stage over `videos` videos of `spec` (video i: template i % 70, its own
    layout) and the KiB their frames take, and the first `keep` videos' (states, render seconds)
    for the baseline."""
    clock = time.process_time
    cost = {"placement": 0.0, "physics": 0.0, "render": 0.0, "encode": 0.0}
    kept, size = [], 0
    for i in range(videos):
        t0 = clock()
        params = phyre.sample_params(spec, i % 70, np.random.default_rng([0, i]))
        t1 = clock()
        states = phyre.simulate(params, spec)
        t2 = clock()
        frames = phyre.render(states, spec.world_size, resolution, buffer, spec=spec)
        t3 = clock()
        size += len(encode_frames(frames, ZSTD_LEVEL))
        t4 = clock()
        for key, dt in zip(cost, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            cost[key] += dt
        if len(kept) < keep:
            kept.append((states, t3 - t2))
    cost["KiB"] = size / 1024
    return cost, kept


def report(name: str, cost: dict, videos: int) -> float:
    kib = cost.pop("KiB")
    total = sum(cost.values())
    rate = videos / total
    print(
        f"  {name}: {rate:7.1f} videos/s/core end to end ({1000 / rate:.1f} ms/video, "
        f"{kib / videos:.1f} KiB/video stored)"
    )
    for key, dt in cost.items():
        print(f"    {key:10s} {1000 * dt / videos:6.2f} ms/video  {100 * dt / total:5.1f} %")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=70, help="one per template, cycling")
    ap.add_argument("--baseline-videos", type=int, default=7)
    ap.add_argument("--paper-videos", type=int, default=70, help="0: skip paper mode")
    ap.add_argument("--resolution", type=int, default=256)
    args = ap.parse_args()
    spec = SceneSpec(
        scene="phyre", level="in_template", sampling="random", count=0, ranges={}, grid={},
        exclude=[], options={"templates": "all", "videos_per_template": 1},
        world_size=phyre.objects.WORLD_SIZE, frames=32, frame_dt=1 / 3, substeps=20, seed=0,
    )  # fmt: skip
    paper = dataclasses.replace(
        spec, options={**spec.options, "placement": "paper", "render_scale": 2}
    )
    # One frame buffer for all videos, as a datagen worker reuses it: a fresh 6 MB array per
    # video costs ~1 ms of page faults.
    buffer = np.empty((spec.frames, 3, args.resolution, args.resolution), dtype=np.uint8)
    # One untimed video of each mode first: numba compiles (or loads from its cache) the render
    # and encode kernels on first use, once per process.
    for s in (spec, paper):
        warm = phyre.simulate(phyre.sample_params(s, 0, np.random.default_rng(12345)), s)
        encode_frames(phyre.render(warm, s.world_size, args.resolution, buffer, spec=s), 1)
    cost, kept = timed_videos(spec, args.videos, args.resolution, buffer, args.baseline_videos)
    print(f"phyre {args.resolution}x{args.resolution}x32, {args.videos} videos, 1 core:")
    ours = report("ours", cost, args.videos)
    total = sum(cost.values())
    shared = shared_layout_placement(args.videos)
    with_shared = 1 / (total / args.videos - cost["placement"] / args.videos + shared)
    print(
        f"  with 100 shared layouts per template (the paper's training configs): placement "
        f"{1000 * shared:.2f} ms/video, {with_shared:.1f} videos/s/core end to end"
    )
    if args.paper_videos:
        paper_cost, _ = timed_videos(paper, args.paper_videos, args.resolution, buffer)
        rate = report("paper mode (authors' placement, drawn at 2x and averaged)", paper_cost,
                      args.paper_videos)  # fmt: skip
        print(f"  paper mode / default mode = {rate / ours:.2f}x")
    # Baseline on the first videos: same physics and encoding, full-frame rendering.
    per_video_phys = cost["placement"] / args.videos + cost["physics"] / args.videos
    clock = time.process_time
    t0 = clock()
    for states, _ in kept:
        encode_frames(full_frame_render(states, spec.world_size, args.resolution), ZSTD_LEVEL)
    base_render_encode = (clock() - t0) / len(kept)
    ours_render = sum(r for _, r in kept) / len(kept)
    base = 1 / (per_video_phys + base_render_encode)
    print(f"  baseline: {base:7.1f} videos/s/core end to end (full-frame rendering)")
    print(
        f"  render speedup {(base_render_encode - cost['encode'] / args.videos) / ours_render:.1f}x, "
        f"end-to-end ratio ours/baseline = {ours / base:.1f}x"
    )


if __name__ == "__main__":
    main()
