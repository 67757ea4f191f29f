"""bench/gpu_check.sh cannot rot: its CPU dry run takes every step of the GPU check at toy size
(the same commands, gloo instead of NCCL), and its wheel list covers the training stack."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from harness import REPO, train_env

SCRIPT = REPO / "bench" / "gpu_check.sh"


def test_wheel_list_is_the_stack_without_torch() -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT), "--list-wheels"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    names = {line.split("==")[0] for line in result.stdout.split()}
    assert {"deepspeed", "megatron-core", "mosaicml-streaming", "omegaconf", "numpy"} <= names
    assert "torchvision==0.26.0" in result.stdout.split()  # for the GPU machine's torch 2.11
    assert not {"torch", "triton", "phyworld"} & names
    assert not any(name.startswith("nvidia-") for name in names)


@pytest.mark.slow
def test_dry_run_takes_every_step(tmp_path: Path) -> None:
    env = {
        **train_env(),
        "OUT": str(tmp_path / "out"),
        "TMPDIR": str(tmp_path),
        "GPU_CHECK_BUDGET_S": "3000",  # a shared CPU: no step may be skipped for time here
        "PYTHON": os.environ.get("PYTHON", str(REPO / ".venv" / "bin" / "python")),
    }
    result = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "skipped" not in summary and "cannot import" not in summary, summary
    for expected in (
        "device cpu",
        "head dim 16, 32 tokens",  # the SDPA backend check ran on the model's attention
        "DiT-tiny",  # train_step.py: a whole step timed
        "SP path at SP=1",  # bench/sequence_parallel.py --overhead-only
        "train fp32 (fp32): rc=0, 6 step lines",
        "train bf16 (bf16): rc=0, 6 step lines",
        "train resumed (bf16): rc=0, 3 step lines",
        "loss parity bf16 vs fp32 over 6 steps",
        "exact resume from step 3: losses of steps 4-6 identical: True",
        "final weights and EMA identical: True",
    ):
        assert expected in summary, f"{expected!r} missing from:\n{summary}"
