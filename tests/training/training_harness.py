"""Helpers for the training tests: a tiny uniform-motion dataset and a launcher for training runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import phyworld  # noqa: F401  (before streaming)

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "train" / "tiny_cpu.yaml"


def make_dataset(root: Path | str, count: int = 64, frames: int = 8, resolution: int = 32) -> Path:
    """A small uniform-motion dataset made by `python -m datagen` (MDS + manifest)."""
    from datagen.__main__ import main as datagen

    args = [
        str(REPO / "configs" / "data" / "uniform_base.yaml"),
        f"output={root}",
        "sampling=random",
    ]
    args += [f"count={count}", f"frames={frames}", f"resolution={resolution}", "progress=false"]
    assert datagen(args) == 0
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DS_ACCELERATOR="cpu",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p),
        TOKENIZERS_PARALLELISM="false",
    )
    for key in (
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
    ):
        env.pop(key, None)
    for key in [k for k in env if k.startswith("SLURM_")]:  # tests run outside any Slurm job
        env.pop(key, None)
    return env


def run_training(
    args: list[str], nproc: int = 1, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess:
    """`python -m training` (one process) or torchrun with `nproc` processes; returns the result."""
    if nproc == 1:
        cmd = [sys.executable, "-m", "training", *args]
    else:
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
    result = subprocess.run(
        cmd, env=train_env(), cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"training failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result
