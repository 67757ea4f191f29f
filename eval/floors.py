"""Ground-truth floors: the velocity error the parsers give on the simulator's own videos.

    python -m eval.floors [--videos 200] [--resolution 128] [--scenarios uniform,collision,parabola]

For each scenario (its `configs/data/SCENARIO_eval_id.yaml`, made in memory at `--resolution`),
each rendering (`aa`, `paper`), each parser (`threshold`, `alpha`) and each metric (`step`,
`paper`), the mean error of the ground-truth videos: what a perfect model would score. Prints the
markdown table of docs/eval.md.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from eval.config import METRICS
from eval.parse import PARSERS, parse_balls
from eval.samples import kinematic_truth
from eval.velocity import paper_velocity_errors, velocity_errors

DATA_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "data"
STYLES = ("aa", "paper")


def eval_batches(config: str, count: int, *overrides: str) -> Iterator[list[dict]]:
    """`count` samples of datagen config `config`, made in memory 32 at a time and decoded as
    `phyworld.data.shards.iter_samples` reads them."""
    from datagen.config import DatagenConfig
    from datagen.generate import BATCH, make_plan, make_samples
    from phyworld.config import load_config
    from phyworld.data.codec import decode_frames

    args = [str(config), "output=unused", f"count={count}", *overrides]
    plan = make_plan(load_config(DatagenConfig, args))
    for lo in range(0, count, BATCH):
        batch = make_samples(plan, range(lo, min(lo + BATCH, count)))
        for s in batch:
            s.update(
                frames=decode_frames(s["frames"]),
                objects=json.loads(s["objects"]),
                params=json.loads(s["params"]),
            )
        yield batch


def video_errors(
    samples: list[dict],
    cond_frames: int = 3,
    frames: np.ndarray | None = None,
    name: str = "floors",
) -> dict[tuple[str, str], np.ndarray]:
    """{(parser, metric): (B,) error per video} of `frames` (B, T, H, W, 3) uint8 (default: the
    samples' own, the ground truth) against the true states of `samples` (one scenario)."""
    truth = kinematic_truth(samples, name)
    if frames is None:
        frames = np.stack([s["frames"] for s in samples])
    kw = dict(
        world_size=truth.world_size,
        frame_dt=truth.frame_dt,
        cond_frames=cond_frames,
        scenario=truth.scenario,
    )
    out = {}
    for method in PARSERS:
        parsed = parse_balls(frames, truth.world_size, method=method, colours=truth.colours)
        states = (parsed, truth.position, truth.velocity, truth.radius)
        out[method, "step"] = velocity_errors(*states, **kw)["vel_error"]
        out[method, "paper"] = paper_velocity_errors(*states, **kw)
    return out


def floors(config: str, count: int, *overrides: str) -> dict[tuple[str, str], float]:
    """{(parser, metric): mean GT error} over `count` videos of datagen config `config`."""
    per: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    for batch in eval_batches(config, count, *overrides):
        for key, values in video_errors(batch).items():
            per[key].append(values)
    return {key: float(np.nanmean(np.concatenate(v))) for key, v in per.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--scenarios", default="uniform,collision,parabola")
    args = ap.parse_args()
    cols = [(metric, parser) for metric in METRICS for parser in PARSERS]
    print(f"GT floor, {args.videos} videos of each *_eval_id set at {args.resolution} px")
    print("| scenario | render | " + " | ".join(f"{m}, {p}" for m, p in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for scenario in args.scenarios.split(","):
        config = DATA_CONFIGS / f"{scenario}_eval_id.yaml"
        for style in STYLES:
            res = f"resolution={args.resolution}"
            table = floors(config, args.videos, f"render={style}", res)
            row = [f"{table[p, m]:.5f}" for m, p in cols]
            print(f"| {scenario} | {style} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
