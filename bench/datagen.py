"""Datagen throughput: videos/s per core, end to end into MDS, against the reference design.

    python bench/datagen.py [--videos 2000] [--baseline-videos 30] [--resolution 128]

Ours: `datagen.generate.make_samples` in batches of 32, as the generator runs it (pymunk, 32 videos
per space -> compiled renderer -> `video_zstd` frame column), written by `phyworld.data.shards.PartWriter`
into a local MDS part, for each scenario, in one process (one core).
Baseline, measured in the same run: the reference design -- the same physics, full-frame float
rendering of every frame (the authors' soft edge evaluated on every pixel) and MP4 encoding per
video (ffmpeg libx264 through imageio-ffmpeg). Prints videos/s, KiB per video, the time per
stage, and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Run as `python bench/datagen.py`, this folder comes first on sys.path and this file's name
# would shadow the `datagen` package: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402

from datagen.config import DatagenConfig  # noqa: E402
from datagen.generate import BATCH, make_plan, make_samples  # noqa: E402
from datagen.physics import simulate  # noqa: E402
from datagen.render import draw  # noqa: E402
from phyworld.config import load_config  # noqa: E402
from phyworld.data.codec import encode_frames  # noqa: E402
from phyworld.data.shards import PartWriter  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "data"
SCENARIOS = {
    "uniform": "uniform_30k.yaml",
    "collision": "collision_28k.yaml",
    "parabola": "parabola_30k.yaml",
}


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (ffmpeg): a per-core measure that
    holds on a shared machine, where wall time depends on everyone else's load."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def plan_for(scenario: str, resolution: int, out: str):
    cfg = load_config(
        DatagenConfig,
        [str(CONFIGS / SCENARIOS[scenario]), f"output={out}", f"resolution={resolution}"],
    )
    return make_plan(cfg)


def indices(plan, n: int) -> list[int]:
    """n samples spread over the whole dataset (a grid's first rows are all one speed)."""
    return [int(i) for i in np.linspace(0, plan.count - 1, n).astype(int)]


def ours(scenario: str, n: int, resolution: int, tmp: str) -> dict[str, float]:
    out = os.path.join(tmp, scenario)
    plan = plan_for(scenario, resolution, out)
    idx = indices(plan, n)
    make_samples(plan, idx[:2])  # warm caches (imports, grids, compiled kernels)
    start, cpu = time.perf_counter(), cpu_seconds()
    writer = PartWriter(out, 0, 0, 1 << 26, plan.config_yaml)
    for lo in range(0, n, BATCH):
        for sample in make_samples(plan, idx[lo : lo + BATCH]):
            writer.write(sample)
    done = writer.publish()
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    nbytes = sum(s["bytes"] for s in done["shards"].values())
    return {
        "videos_per_s": n / seconds,
        "videos_per_cpu_s": n / cpu,
        "kib_per_video": nbytes / n / 1024,
        **stages(plan, idx[:: max(1, n // 320)]),
    }


def stages(plan, idx: list[int]) -> dict[str, float]:
    """CPU milliseconds per video in each stage, as the generator batches them: sampling +
    physics (32 videos per pymunk space), render (one canvas reused), frame encoding."""
    t = {"physics_ms": 0.0, "render_ms": 0.0, "encode_ms": 0.0}
    cfg, spec, canvas = plan.cfg, plan.specs[0], None
    for lo in range(0, len(idx), BATCH):
        t0 = time.process_time()
        worlds = [
            plan.scene.world(
                plan.scene.sample_params(spec, i, np.random.default_rng([cfg.seed, i])), spec
            )
            for i in idx[lo : lo + BATCH]
        ]
        batch = simulate(worlds, cfg.frames, cfg.frame_dt)
        t["physics_ms"] += (time.process_time() - t0) * 1e3
        for states in batch:
            t1 = time.process_time()
            canvas = draw(states, cfg.resolution, cfg.world_size, cfg.render, canvas)
            t2 = time.process_time()
            encode_frames(canvas.frames(), cfg.zstd_level, canvas.boxes())
            t["render_ms"] += (t2 - t1) * 1e3
            t["encode_ms"] += (time.process_time() - t2) * 1e3
    return {k: v / len(idx) for k, v in t.items()}


def reference_render(states, resolution: int, world_size: float) -> np.ndarray:
    """The reference design: every pixel of every frame in float, the authors' soft edge."""
    t = states.positions.shape[0]
    s = world_size / resolution
    x = (np.arange(resolution) + 0.5) * s
    xx, yy = np.meshgrid(x, world_size - x)
    frames = np.empty((t, resolution, resolution, 3), np.uint8)
    for f in range(t):
        img = np.ones((resolution, resolution, 3))
        for k, obj in enumerate(states.objects):
            r = obj["radius"]
            d2 = (xx - states.positions[f, k, 0]) ** 2 + (yy - states.positions[f, k, 1]) ** 2
            alpha = np.clip((r * r - d2) / (0.03 * r * r), 0, 1)[..., None]
            img = img * (1 - alpha) + np.array(obj["colour"]) / 255.0 * alpha
        frames[f] = (img * 255).round().astype(np.uint8)
    return frames


def baseline(scenario: str, n: int, resolution: int, tmp: str) -> dict[str, float]:
    import imageio_ffmpeg

    plan = plan_for(scenario, resolution, os.path.join(tmp, "ref"))
    spec = plan.specs[0]
    idx = indices(plan, n)
    start, cpu = time.perf_counter(), cpu_seconds()
    nbytes = 0
    for i in idx:
        states = plan.scene.simulate(
            plan.scene.sample_params(spec, i, np.random.default_rng([0, i])), spec
        )
        frames = reference_render(states, resolution, plan.cfg.world_size)
        path = os.path.join(tmp, f"ref_{i}.mp4")
        writer = imageio_ffmpeg.write_frames(
            path,
            (resolution, resolution),
            fps=10,
            codec="libx264",
            ffmpeg_log_level="error",
            macro_block_size=1,
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        nbytes += os.path.getsize(path)
        os.remove(path)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return {
        "videos_per_s": n / seconds,
        "videos_per_cpu_s": n / cpu,
        "kib_per_video": nbytes / n / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=2000)
    ap.add_argument("--baseline-videos", type=int, default=30)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--scenarios", default="uniform,collision,parabola")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench_datagen_")
    try:
        print(
            f"datagen benchmark: {args.resolution}x{args.resolution}x32, one process, {os.cpu_count()} CPUs visible"
        )
        print(
            f"{'scenario':10s} {'design':9s} {'videos/s':>9s} {'videos/cpu-s':>12s} {'KiB/video':>9s} "
            f"{'physics':>8s} {'render':>8s} {'encode':>8s} (CPU ms/video)"
        )
        for scenario in args.scenarios.split(","):
            ref = baseline(scenario, args.baseline_videos, args.resolution, tmp)
            new = ours(scenario, args.videos, args.resolution, tmp)
            print(
                f"{scenario:10s} {'reference':9s} {ref['videos_per_s']:9.1f} {ref['videos_per_cpu_s']:12.1f} "
                f"{ref['kib_per_video']:9.2f}"
            )
            print(
                f"{scenario:10s} {'ours':9s} {new['videos_per_s']:9.1f} {new['videos_per_cpu_s']:12.1f} "
                f"{new['kib_per_video']:9.2f} {new['physics_ms']:8.3f} {new['render_ms']:8.3f} "
                f"{new['encode_ms']:8.3f}"
            )
            print(
                f"{scenario:10s} ratio ours / reference: {new['videos_per_s'] / ref['videos_per_s']:.1f}x "
                f"wall, {new['videos_per_cpu_s'] / ref['videos_per_cpu_s']:.1f}x per CPU-second"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
