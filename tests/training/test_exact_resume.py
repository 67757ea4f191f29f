"""Exact resume: 2 processes over gloo, ZeRO-2 and ZeRO-3. 2N steps straight and N steps + resume +
N steps give identical losses at every step and identical final weights (model and EMA).

Steps 1..N of both are the same run (saving must not perturb it, or steps N+1.. would differ)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from harness import TINY_CONFIG, logged_losses, run_training

N = 3


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "workers"), [(2, 1), (3, 0)])
def test_resume_is_exact(tmp_path: Path, tiny_dataset: Path, stage: int, workers: int) -> None:
    common = [
        str(TINY_CONFIG),
        f"data.path={tiny_dataset}",
        f"data.num_workers={workers}",
        f"parallel.zero_stage={stage}",
        "parallel.micro_batch_size=2",
        "parallel.grad_accum_steps=2",
        "logging.every_steps=1",
        "logging.video_every_steps=0",
    ]
    # One run of 2N steps that checkpoints at N and 2N; then a fresh launch from a copy holding
    # only the step-N checkpoint must retrace steps N+1..2N exactly.
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_training(
        [*common, f"output_dir={straight}", f"max_steps={2 * N}", f"checkpoint.every_steps={N}"],
        nproc=2,
    )
    half = f"step_{N:08d}"
    shutil.copytree(straight / "checkpoints" / half, resumed / "checkpoints" / half)
    (resumed / "checkpoints" / "latest").write_text(half)
    second = run_training([*common, f"output_dir={resumed}", f"max_steps={2 * N}"], nproc=2)
    assert f"at step {N}" in second.stdout  # it did resume, not start over

    expected = logged_losses(straight)
    assert sorted(expected) == list(range(1, 2 * N + 1))
    after = {step: loss for step, loss in expected.items() if step > N}
    assert logged_losses(resumed) == after  # bit-identical, every step

    final = f"checkpoints/step_{2 * N:08d}/weights.pt"
    a = torch.load(straight / final, weights_only=True)
    b = torch.load(resumed / final, weights_only=True)
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), f"{part}.{name} differs"
