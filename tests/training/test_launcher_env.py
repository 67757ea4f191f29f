"""`python -m training` under srun, torchrun or alone: the torchrun variables it ends up with."""

from __future__ import annotations

import os

import pytest

from training.distributed import launcher_env

LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in [*LAUNCH_VARS, *(k for k in os.environ if k.startswith("SLURM_"))]:
        monkeypatch.delenv(key, raising=False)
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
