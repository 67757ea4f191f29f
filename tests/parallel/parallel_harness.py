"""Run a function in N real processes over gloo (shared by the tests of tests/parallel/)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import phyworld  # noqa: F401  (makes `import streaming` work; see phyworld.compat)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

REPO = Path(__file__).resolve().parents[2]


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


def run_training(args: list[str], nproc: int, timeout: float = 600) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node=nproc -m training ARGS` on CPU; fails with its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    for key in (
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
    ):
        env.pop(key, None)
    env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        f"--master_port={free_port()}",
        "-m",
        "training",
        *args,
    ]
    result = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(
            f"training failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result


def logged_losses(run: Path) -> dict[int, float]:
    """step -> train/loss over every TensorBoard event file of a run (one per launch)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[int, float] = {}
    for events in sorted((run / "tb").glob("events.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        out.update({e.step: e.value for e in acc.Scalars("train/loss")})
    return out
