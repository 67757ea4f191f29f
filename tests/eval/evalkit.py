"""Shared helpers of the eval tests: eval videos made in memory by datagen's own scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datagen.config import DatagenConfig
from datagen.generate import make_plan, make_sample
from phyworld.config import load_config
from phyworld.data.codec import decode_frames

REPO = Path(__file__).resolve().parents[2]
DATA_CONFIGS = REPO / "configs" / "data"


def make_samples(config: str, count: int, *overrides: str) -> list[dict]:
    """`count` samples of configs/data/`config` (decoded like `phyworld.data.shards.iter_samples`)."""
    import json

    cfg = load_config(
        DatagenConfig,
        [str(DATA_CONFIGS / config), "output=/nonexistent", f"count={count}", *overrides],
    )
    plan = make_plan(cfg)
    out = []
    for i in range(count):
        s = make_sample(plan, i)
        s["frames"] = decode_frames(s["frames"])
        s["objects"] = json.loads(s["objects"])
        s["params"] = json.loads(s["params"])
        out.append(s)
    return out


def stack(samples: list[dict]) -> np.ndarray:
    return np.stack([s["frames"] for s in samples])
