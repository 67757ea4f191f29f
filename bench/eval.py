"""Eval throughput: ball parsing, I3D features for FVD, and sampling time per sampler step.

    python bench/eval.py [--videos 64]

Each number comes with a baseline measured in the same run on the same data, so the ratio means
something on a loaded machine:
- parsing: videos/s per core (one thread) of both parsers at 128x128x32, against reading the
  same bytes once (`frames.max()`, the memory-bound floor of any parser that looks at every pixel);
- FVD features: I3D videos/s at 16 frames, against its own preprocessing (uint8 -> 224 px);
- sampling: seconds per video per Euler step of a tiny DiT at 32x32x32 (from the difference of
  2- and 4-step runs), against parsing that video.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# This file is named like the `eval` package: drop its folder from the path so `import eval`
# finds the package (the repository root), not this script.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE.parent)]

import numpy as np  # noqa: E402
import torch  # noqa: E402

import phyworld  # noqa: E402, F401


def timed(fn, repeat: int = 3) -> float:
    """Best of `repeat` wall times (s) after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def uniform_videos(n: int, resolution: int = 128, frames: int = 32) -> np.ndarray:
    """n anti-aliased uniform-motion videos rendered by datagen (one red ball each)."""
    from datagen.render import render
    from datagen.scenes import States

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        r, v = rng.uniform(0.7, 1.4), rng.uniform(1, 4)
        t = np.arange(frames) * 0.1
        pos = np.stack([1 + v * t, np.full(frames, 5.0)], -1)[:, None].astype(np.float32)
        obj = {
            "type": "ball",
            "shape": "circle",
            "colour": [255, 0, 0],
            "radius": r,
            "dynamic": True,
        }
        states = States(pos, np.zeros_like(pos), np.zeros((frames, 1), np.float32), [obj])
        out.append(np.ascontiguousarray(render(states, resolution, 10.0)))
    return np.stack(out)


def bench_parse(n: int) -> None:
    from eval.parse import parse_balls

    videos = uniform_videos(n)
    read = timed(lambda: videos.max())
    print(f"parse: {n} videos 128x128x32, 1 thread; read-once baseline {n / read:,.0f} videos/s")
    for method in ("threshold", "alpha"):
        t = timed(lambda m=method: parse_balls(videos, 10.0, method=m, colours=("red",)))
        print(
            f"  {method:9s} {n / t:8,.0f} videos/s/core  x{t / read:.1f} the read-once time  (goal 10,000)"
        )


def bench_fvd() -> None:
    from eval.fvd import i3d_features, load_i3d, preprocess

    model = load_i3d()
    videos = np.random.default_rng(0).integers(0, 256, (2, 16, 128, 128, 3)).astype(np.uint8)
    pre = timed(lambda: preprocess(videos), repeat=2)
    full = timed(lambda: i3d_features(model, videos, batch_size=2), repeat=1)
    print(
        f"fvd: I3D features {2 / full:.2f} videos/s (16 frames, {torch.get_num_threads()} threads); x{full / pre:.0f} its preprocessing"
    )


def bench_sampling(n: int) -> None:
    from eval.parse import parse_balls
    from phyworld.config import load_config
    from training.autoencoders import build_autoencoder
    from training.config import TrainConfig
    from training.inference import Generator
    from training.model import build_dit

    cfg = load_config(TrainConfig, ["configs/train/tiny_cpu.yaml", "data.path=x", "output_dir=x"])
    ae = build_autoencoder(cfg.vae)
    gen = Generator(
        build_dit(cfg.model, ae.latent_channels).eval(), ae, cfg, torch.device("cpu"), None
    )
    videos = uniform_videos(n, resolution=32)
    with torch.no_grad():
        t2 = timed(lambda: gen.generate(videos, 3, 2), repeat=1)
        t4 = timed(lambda: gen.generate(videos, 3, 4), repeat=1)
    per_step = max(t4 - t2, 1e-9) / 2 / n
    parse = timed(lambda: parse_balls(videos, 10.0, colours=("red",))) / n
    print(
        f"sampling: DiT-tiny 32x32x32, {per_step * 1e3:.1f} ms per video per Euler step; x{per_step / parse:.0f} parsing the video"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", type=int, default=64)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    bench_parse(args.videos)
    bench_sampling(8)
    torch.set_num_threads(threads)
    bench_fvd()


if __name__ == "__main__":
    main()
