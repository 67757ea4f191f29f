"""Fixtures for the training tests: a tiny uniform-motion MDS dataset and a launcher for runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import phyworld  # noqa: F401  (before streaming)

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "train" / "tiny_cpu.yaml"


def render_uniform(v: float, r: float, frames: int = 8, size: int = 32) -> np.ndarray:
    """A red ball of radius r moving right at v on white: (T, H, W, 3) uint8 (soft edge)."""
    world, dt = 10.0, 0.1
    s = world / size
    centres = (np.arange(size) + 0.5) * s
    xx, yy = np.meshgrid(centres, world - centres)
    video = np.full((frames, size, size, 3), 255, np.uint8)
    for t in range(frames):
        x, y = 2.0 + v * t * dt, 5.0
        d2 = (xx - x) ** 2 + (yy - y) ** 2
        alpha = np.clip((r * r - d2) / (0.03 * r * r) + 0.5, 0, 1)[..., None]
        video[t] = (255 * (1 - alpha) + np.array([255, 0, 0]) * alpha).round().astype(np.uint8)
    return video


def write_dataset(root: Path, count: int = 64, frames: int = 8, size: int = 32) -> Path:
    """A small MDS dataset with the frames column as raw uint8 arrays (decoded by streaming)."""
    from streaming import MDSWriter

    rng = np.random.default_rng(0)
    columns = {"id": "str", "scenario": "str", "frames": "ndarray:uint8"}
    with MDSWriter(out=str(root), columns=columns, size_limit=1 << 20) as writer:
        for i in range(count):
            video = render_uniform(rng.uniform(1, 4), rng.uniform(0.7, 1.4), frames, size)
            writer.write({"id": f"tiny-{i:09d}", "scenario": "uniform", "frames": video})
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "uniform_tiny")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DS_ACCELERATOR="cpu",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO),
        TOKENIZERS_PARALLELISM="false",
    )
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_JOB_ID"):
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
