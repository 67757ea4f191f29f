"""Run a function in N real processes over gloo, and a tiny dataset (tests/parallel/ only;
what other areas share too is in tests/harness.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from harness import free_port


def _entry(rank: int, world: int, port: int, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)  # 2 cores shared by every rank of every test
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        fn(rank, *args)
    finally:
        from training.parallel.groups import destroy_parallel

        destroy_parallel()
        dist.barrier()
        dist.destroy_process_group()


def run_ranks(world: int, fn: Callable[..., Any], *args: Any) -> None:
    """Call `fn(rank, *args)` in `world` spawned processes; an exception in any rank fails here."""
    mp.spawn(_entry, args=(world, free_port(), fn, args), nprocs=world, join=True)


# ---------------------------------------------------------------------------------------------
#                   Real training runs (python -m training under torchrun)
# ---------------------------------------------------------------------------------------------


def write_tiny_dataset(root: Path, count: int = 32, frames: int = 8, size: int = 32) -> Path:
    """An MDS dataset of coloured squares sliding right: `frames` as (T, H, W, 3) uint8."""
    from streaming import MDSWriter  # after `import phyworld` (top of this file)

    rng = np.random.default_rng(0)
    columns = {"id": "str", "scenario": "str", "frames": "ndarray:uint8"}
    with MDSWriter(out=str(root), columns=columns, size_limit=1 << 20) as writer:
        for i in range(count):
            video = np.full((frames, size, size, 3), 255, np.uint8)
            x, y, v = rng.integers(0, size // 2), rng.integers(0, size - 6), rng.integers(1, 3)
            colour = rng.integers(0, 200, 3)
            for t in range(frames):
                left = (x + v * t) % (size - 6)
                video[t, y : y + 6, left : left + 6] = colour
            writer.write({"id": f"tiny-{i:09d}", "scenario": "uniform", "frames": video})
    return root
