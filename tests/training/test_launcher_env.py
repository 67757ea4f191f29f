"""`python -m training` under srun, torchrun or alone: the torchrun variables it ends up with, and
the device it picks (never a silent CPU run when GPUs were requested)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from harness import REPO, TINY_CONFIG, train_env

from training.distributed import DeviceError, gpus_requested, launcher_env, select_device

LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No launcher variables; those `launcher_env` sets are removed again after the test (a
    RANK left behind silences rank-0-only output, e.g. the CLI's errors, in later tests)."""
    for key in [*LAUNCH_VARS, *(k for k in os.environ if k.startswith("SLURM_"))]:
        monkeypatch.setenv(key, "")  # recorded as it was, so the teardown restores it
        monkeypatch.delenv(key)
    return monkeypatch


def test_srun_task(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SLURM_PROCID", "13")
    clean_env.setenv("SLURM_NTASKS", "32")
    clean_env.setenv("SLURM_LOCALID", "5")
    clean_env.setenv("SLURM_STEP_TASKS_PER_NODE", "8(x4)")
    clean_env.setenv("SLURM_JOB_ID", "123456")
    clean_env.setenv("SLURM_JOB_NODELIST", "gpu[001-004]")
    clean_env.setenv("PATH", "/nonexistent")  # no scontrol: the master address falls back
    launcher_env()
    got = {k: os.environ[k] for k in LAUNCH_VARS}
    assert got == {
        "RANK": "13",
        "WORLD_SIZE": "32",
        "LOCAL_RANK": "5",
        "LOCAL_WORLD_SIZE": "8",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(20000 + 123456 % 20000),
    }


def test_torchrun_wins_over_slurm(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SLURM_PROCID", "3")
    clean_env.setenv("SLURM_NTASKS", "4")
    for key, value in {
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
    }.items():
        clean_env.setenv(key, value)
    launcher_env()
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"]) == ("1", "2")


def test_plain_python_is_a_world_of_one(clean_env: pytest.MonkeyPatch) -> None:
    launcher_env()
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["MASTER_ADDR"]) == (
        "0",
        "1",
        "127.0.0.1",
    )
    assert int(os.environ["MASTER_PORT"]) > 0


# ---------------------------------------------------------------------------------------------
#             GPUs requested but unusable: an error with the fix, never a silent CPU run
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"CUDA_VISIBLE_DEVICES": "0,1"}, "CUDA_VISIBLE_DEVICES=0,1"),
        ({"CUDA_VISIBLE_DEVICES": ""}, None),  # GPUs hidden on purpose
        ({"CUDA_VISIBLE_DEVICES": "-1"}, None),
        ({"SLURM_GPUS_PER_NODE": "0"}, None),  # what `sbatch --gpus-per-node=0` sets
        ({"SLURM_GPUS_PER_NODE": "a100:8"}, "SLURM_GPUS_PER_NODE=a100:8"),
        ({"SLURM_GPUS_ON_NODE": "8"}, "SLURM_GPUS_ON_NODE=8"),
        ({"SLURM_JOB_GPUS": "0,1,2,3"}, "SLURM_JOB_GPUS=0,1,2,3"),
    ],
)
def test_gpus_requested_reads_cuda_and_slurm(env: dict[str, str], expected: str | None) -> None:
    assert gpus_requested(env) == expected


def test_select_device(clean_env: pytest.MonkeyPatch) -> None:
    """No GPU here: the CPU when none was asked for or on purpose, an error otherwise."""
    clean_env.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert select_device("auto") == "cpu"
    clean_env.setenv("SLURM_GPUS_ON_NODE", "8")
    assert select_device("cpu") == "cpu"
    with pytest.raises(DeviceError, match=r"requested \(SLURM_GPUS_ON_NODE=8\)"):
        select_device("auto")
    clean_env.delenv("SLURM_GPUS_ON_NODE")
    with pytest.raises(DeviceError, match=r"requested \(parallel.device=cuda\)"):
        select_device("cuda")
    with pytest.raises(DeviceError, match="use one of auto, cuda, cpu"):
        select_device("gpu")


def test_training_refuses_to_fall_back_to_the_cpu(tmp_path) -> None:
    """`python -m training` with GPUs requested but no usable CUDA: exit 2 and the fix, before
    anything is built; with parallel.device=cpu it goes on (to the missing dataset)."""
    args = [str(TINY_CONFIG), f"data.path={tmp_path / 'nope'}", f"output_dir={tmp_path / 'run'}"]
    env = {**train_env(), "CUDA_VISIBLE_DEVICES": "0,1"}
    cmd = [sys.executable, "-m", "training", *args]
    refused = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "training: error: GPUs were requested (CUDA_VISIBLE_DEVICES=0,1)" in refused.stderr
    assert "parallel.device=cpu" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "run").exists()
    on_purpose = subprocess.run(
        [*cmd, "parallel.device=cpu"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert on_purpose.returncode == 2 and "GPUs were requested" not in on_purpose.stderr
    assert "nope" in on_purpose.stderr, on_purpose.stderr[-2000:]  # got as far as the data
