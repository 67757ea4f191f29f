"""Joining the job's process group, whoever launched us: torchrun, srun, or a plain `python`.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT. srun sets SLURM_PROCID,
SLURM_NTASKS, SLURM_LOCALID and the node list; we translate those into the torchrun variables
(streaming and DeepSpeed read them too). A plain `python -m training` is a world of one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import warnings
from dataclasses import dataclass
from datetime import timedelta

import torch

from phyworld.cli import UserError

DEVICES = ("auto", "cuda", "cpu")
# What says this process was given GPUs: CUDA's own variable and Slurm's (counts are N, type:N or
# a list of indices; 0, -1 and empty mean none).
GPU_REQUEST_VARS = (
    "CUDA_VISIBLE_DEVICES",
    "SLURM_GPUS_ON_NODE",
    "SLURM_STEP_GPUS",
    "SLURM_JOB_GPUS",
    "SLURM_GPUS_PER_NODE",
    "SLURM_GPUS_PER_TASK",
    "SLURM_GPUS",
)


class DeviceError(UserError, RuntimeError):
    """GPUs were asked for but this process cannot use them; the message names the fix."""


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _first_slurm_host() -> str:
    nodes = os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST", "")
    try:
        out = subprocess.run(
            ["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, check=True
        )
        return out.stdout.split()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "127.0.0.1"


def launcher_env() -> None:
    """Fill the torchrun variables from Slurm's, or for a single process, when they are missing."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        env.setdefault("LOCAL_RANK", "0")
        env.setdefault("LOCAL_WORLD_SIZE", env["WORLD_SIZE"])
        return
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        env["RANK"] = env["SLURM_PROCID"]
        env["WORLD_SIZE"] = env["SLURM_NTASKS"]
        env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
        # "4(x2)" or "4,4": tasks on this node come first.
        per_node = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE", "1")
        env["LOCAL_WORLD_SIZE"] = per_node.split("(")[0].split(",")[0]
        env.setdefault("MASTER_ADDR", _first_slurm_host())
        # A port derived from the job id, so every task computes the same one without talking.
        env.setdefault("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))
        return
    env.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")
    env.setdefault("MASTER_ADDR", "127.0.0.1")
    env.setdefault("MASTER_PORT", str(_free_port()))


def gpus_requested(env: dict[str, str] | None = None) -> str | None:
    """`NAME=value` of the first variable saying this process was given GPUs, else None."""
    env = os.environ if env is None else env
    for name in GPU_REQUEST_VARS:
        value = env.get(name, "").strip()
        if value.rsplit(":", 1)[-1] not in ("", "0", "-1", "NoDevFiles", "none"):
            return f"{name}={value}"
    return None


def select_device(requested: str) -> str:
    """`cuda` or `cpu` for `parallel.device`: `auto` takes CUDA when it works and the CPU only when
    no GPU was requested; GPUs requested (or `cuda`) but unusable raises `DeviceError`."""
    if requested not in DEVICES:
        raise DeviceError(f"parallel.device={requested!r}: use one of {', '.join(DEVICES)}")
    if requested == "cpu":
        return "cpu"
    with warnings.catch_warnings(record=True) as caught:  # torch says why CUDA is unusable
        warnings.simplefilter("always")
        if torch.cuda.is_available():
            return "cuda"
    asked = gpus_requested() or ("parallel.device=cuda" if requested == "cuda" else None)
    if asked is None:
        return "cpu"
    build = (
        f"torch {torch.__version__} (built for CUDA {torch.version.cuda})"
        if torch.version.cuda
        else f"torch {torch.__version__}, a CPU-only build,"
    )
    why = " ".join(str(w.message).strip() for w in caught)
    raise DeviceError(
        f"GPUs were requested ({asked}) but {build} cannot use them"
        + (f": {why}" if why else "")
        + ". Install a torch build for a CUDA version this machine's driver supports (nvidia-smi "
        "prints the highest; a CUDA 13 build needs driver 580 or newer), or train on the CPU on "
        "purpose with parallel.device=cpu (gloo, fp32)."
    )


def init_distributed(timeout_s: int, device: str = "auto") -> DistEnv:
    """Join the process group (NCCL on GPU, gloo on CPU) with a timeout on every collective.

    `device` is `parallel.device` (see `select_device`).
    """
    launcher_env()  # first: RANK decides who prints an error
    on_gpu = select_device(device) == "cuda"
    if not on_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    import deepspeed.ops

    if not on_gpu:
        # Otherwise DeepSpeed compiles a shared-memory comm op (~80 s) at init; gloo is enough here.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    local_rank = int(os.environ["LOCAL_RANK"])
    if on_gpu:
        torch.cuda.set_device(local_rank)
    deepspeed.init_distributed(
        dist_backend="nccl" if on_gpu else "gloo", timeout=timedelta(seconds=timeout_s)
    )
    return DistEnv(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=local_rank,
        device=torch.device("cuda", local_rank) if on_gpu else torch.device("cpu"),
    )
