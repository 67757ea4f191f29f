"""Sequence parallelism inside the real training loop (`python -m training` under torchrun, gloo).

- 4 processes, DP=2 x SP=2 with ZeRO-2, log the same loss at every step as DP=2 x SP=1 on 2
  processes (same global batch, same data order, same noise), and end with the same weights.
- Resume with SP=2 is exact: N steps + resume + N steps = 2N steps straight, bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from harness import REPO, logged_losses, run_training
from parallel_harness import write_tiny_dataset

N = 2
RTOL = 1e-5


@pytest.mark.slow
def test_dp2_sp2_matches_dp2_sp1_and_resumes_exactly(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "data")
    common = [
        str(REPO / "configs" / "train" / "tiny_cpu.yaml"),
        f"data.path={data}",
        "data.verify_manifest=false",
        "data.num_workers=0",
        "parallel.zero_stage=2",
        "parallel.micro_batch_size=2",
        "logging.every_steps=1",
        "logging.video_every_steps=0",
        "checkpoint.every_steps=100",
        "optim.warmup_steps=0",
    ]
    sp1, sp2, resumed = tmp_path / "sp1", tmp_path / "sp2", tmp_path / "sp2_resumed"
    sp1_args = [*common, "parallel.sequence_parallel_size=1", f"max_steps={2 * N}"]
    sp2_args = [*common, "parallel.sequence_parallel_size=2"]
    run_training([*sp1_args, f"output_dir={sp1}"], nproc=2)
    run_training([*sp2_args, f"output_dir={sp2}", f"max_steps={2 * N}"], nproc=4)
    run_training([*sp2_args, f"output_dir={resumed}", f"max_steps={N}"], nproc=4)
    second = run_training([*sp2_args, f"output_dir={resumed}", f"max_steps={2 * N}"], nproc=4)
    assert f"at step {N}" in second.stdout  # it resumed rather than starting over
    assert "rank 0/4: dp 0/2, sp 0/2" in second.stdout

    # DP2 x SP2 = DP2 x SP1, every step, to fp32 tolerance (the reductions differ in order).
    expected = logged_losses(sp1)
    assert sorted(expected) == list(range(1, 2 * N + 1))
    got = logged_losses(sp2)
    assert sorted(got) == sorted(expected)
    for step, value in expected.items():
        assert abs(got[step] - value) <= RTOL * abs(value), f"step {step}: {got[step]} vs {value}"
    assert len(set(expected.values())) == len(expected), "losses should change as it trains"

    # Resume with SP=2: bit-identical losses and weights.
    assert logged_losses(resumed) == got

    final = f"checkpoints/step_{2 * N:08d}/weights.pt"
    w1, w2, w3 = (
        torch.load(run / final, weights_only=True)["model"] for run in (sp1, sp2, resumed)
    )
    assert w1.keys() == w2.keys() == w3.keys()
    for name in w1:
        assert torch.equal(w2[name], w3[name]), f"{name}: resumed SP=2 run differs"
        # Adam divides by sqrt(v): for near-zero gradients it magnifies last-bit differences, so
        # weights get an absolute floor of 1e-3 of one step (lr 1e-3) on top of the 1e-5 rtol.
        torch.testing.assert_close(
            w2[name], w1[name], rtol=RTOL, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}"
        )
