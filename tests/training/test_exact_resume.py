"""Exact resume: 2 processes over gloo, ZeRO-2 and ZeRO-3. 2N steps straight and N steps + resume +
N steps give identical losses at every step and identical final weights (model and EMA).

Steps 1..N of both are the same run (saving must not perturb it, or steps N+1.. would differ)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from harness import TINY_CONFIG, flip, logged_losses, run_training

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


@pytest.mark.slow
def test_corrupt_checkpoints_are_set_aside_and_resume_continues_exactly(
    tmp_path: Path, tiny_dataset: Path
) -> None:
    """Checkpoints 4, 3 and 2 each get 64 flipped bytes in one file (weights.pt, a DeepSpeed ZeRO
    shard, a rank file). Resume sets each aside with a warning naming the file, resumes from step
    1 and retraces steps 2..4 bit-exactly. A checkpoint left half-deleted by a killed prune is
    never read, and is cleaned up."""
    common = [
        str(TINY_CONFIG),
        f"data.path={tiny_dataset}",
        "data.num_workers=0",
        "parallel.zero_stage=2",
        "parallel.micro_batch_size=2",
        "logging.every_steps=1",
        "logging.video_every_steps=0",
        "checkpoint.every_steps=1",
        "checkpoint.keep_last=4",
        "max_steps=4",
    ]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_training([*common, f"output_dir={straight}"], nproc=2)
    shutil.copytree(straight / "checkpoints", resumed / "checkpoints")
    ckpts = resumed / "checkpoints"
    damaged = {
        4: "weights.pt",
        3: "deepspeed/zero_pp_rank_1_mp_rank_00_optim_states.pt",
        2: "rank_00001.pt",
    }
    for step, rel in damaged.items():
        flip(ckpts / f"step_{step:08d}" / rel)
    trash = ckpts / ".trash_step_00000009.x1y2"  # a prune killed after its first deletion
    shutil.copytree(ckpts / "step_00000001", trash)
    (trash / "weights.pt").unlink()

    second = run_training([*common, f"output_dir={resumed}"], nproc=2)
    for step, rel in damaged.items():
        assert f"step_{step:08d} is corrupt, not resuming from it: {rel}: content" in second.stderr
    assert f"resumed from {ckpts / 'step_00000001'} at step 1" in second.stdout
    expected = logged_losses(straight)
    assert logged_losses(resumed) == {s: loss for s, loss in expected.items() if s > 1}

    final = "checkpoints/step_00000004/weights.pt"
    a = torch.load(straight / final, weights_only=True)
    b = torch.load(resumed / final, weights_only=True)
    for part in ("model", "ema"):
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), f"{part}.{name} differs"
    for step, rel in damaged.items():  # set aside as they were, never deleted
        kept = ckpts / f"corrupt_step_{step:08d}" / rel
        assert (
            kept.read_bytes() != (straight / "checkpoints" / f"step_{step:08d}" / rel).read_bytes()
        )
    assert (ckpts / "latest").read_text() == "step_00000004"
    assert not list(ckpts.glob(".trash_*")) and not list(ckpts.glob(".tmp_*"))
