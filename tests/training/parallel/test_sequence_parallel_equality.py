"""SP=2 against SP=1 on the same batch and weights, in 2 real processes over gloo.

Outputs, the rectified-flow loss and every parameter's gradient (summed over the SP group, as
DeepSpeed does) must match the unsharded model to fp32 tolerance, for a DiT with 3D RoPE and
condition frames whose token shards split the video in time.
"""

from __future__ import annotations

import copy
import functools
import json
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from parallel_harness import HostTensorAudit, run_ranks

from training.diffusion import flow_inputs, loss, sample
from training.model import DiT
from training.parallel.groups import init_parallel
from training.parallel.layout import ParallelError, check_heads, check_zero_stage
from training.parallel.sequence import (
    SequenceParallelDiT,
    UlyssesAttention,
    apply_sequence_parallel,
)

RTOL = 1e-5


def tiny_dit(checkpointing: bool = False) -> DiT:
    """A 2-block DiT, every weight random (the zero-initialised ones too, so all grads are live)."""
    torch.manual_seed(0)
    model = DiT(
        in_channels=3,
        depth=2,
        hidden_size=64,
        num_heads=4,
        patch_hw=2,
        activation_checkpointing=checkpointing,
    )
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    return model


def assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    scale = expected.abs().max().item()
    err = (actual - expected).abs().max().item()
    assert scale > 0, f"{what}: reference is all zeros, the comparison would prove nothing"
    assert err <= RTOL * scale, f"{what}: max error {err:.3e} > {RTOL} x {scale:.3e}"


def _equality(rank: int, checkpointing: bool) -> None:
    groups = init_parallel(2)
    assert (groups.sp_size, groups.dp_size, groups.sp_rank) == (2, 1, rank)
    reference = tiny_dit(checkpointing)
    sharded = apply_sequence_parallel(copy.deepcopy(reference), groups)
    assert isinstance(sharded, SequenceParallelDiT)
    assert sharded.state_dict().keys() == reference.state_dict().keys()
    assert sum(isinstance(m, UlyssesAttention) for m in sharded.modules()) == 2
    reference.train()
    sharded.train()

    # B=2, C=3, T=4, 8x8 latents -> 4 x 4 x 4 = 64 tokens: rank 0 holds frames 0-1, rank 1 2-3.
    x0 = torch.randn(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    inputs = flow_inputs(x0, cond_frames=1, generator=torch.Generator().manual_seed(2))
    args = (inputs.x_t, inputs.t, inputs.cond, inputs.mask)
    assert_rel_close(sharded(*args), reference(*args), "prediction")

    ref_loss = loss(reference, x0, 1, generator=torch.Generator().manual_seed(3))
    sp_loss = loss(sharded, x0, 1, generator=torch.Generator().manual_seed(3))
    assert_rel_close(sp_loss.detach(), ref_loss.detach(), "loss")
    ref_loss.backward()
    sp_loss.backward()

    own_token_grads_differ = False
    for (name, p_ref), p_sp in zip(reference.named_parameters(), sharded.parameters()):
        local = p_sp.grad.clone()
        dist.all_reduce(p_sp.grad, group=groups.sp_group)  # what DeepSpeed does over SP
        assert_rel_close(p_sp.grad, p_ref.grad, f"grad of {name}")
        own_token_grads_differ |= not torch.allclose(local, p_ref.grad, rtol=1e-3, atol=0)
    assert own_token_grads_differ, "each rank's gradient should cover only its own tokens"


def _collectives_on_model_device(rank: int) -> None:
    """Every collective of an SP step (the first forward's input check included) gets tensors on
    the model's device: NCCL has no host backend, so a host tensor would crash the GPU run."""
    groups = init_parallel(2)
    model = apply_sequence_parallel(tiny_dit(), groups).train()
    x0 = torch.randn(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with HostTensorAudit().collectives() as audit:
        loss(model, x0, 1, generator=torch.Generator().manual_seed(3)).backward()
        model.eval()
        sample(model, x0, 1, steps=2, generator=torch.Generator().manual_seed(5))
    assert audit.calls.get("all_to_all_single", 0) >= 2 * 2 * 2, audit.calls  # fwd+bwd, 2 blocks
    assert audit.calls.get("all_gather", 0) >= 1, audit.calls  # the input check ran under audit
    assert not audit.violations, audit.violations


def _audit_catches_host_tensors(rank: int) -> None:
    """The audit has teeth: a `.cpu()` copy handed to a collective is reported."""
    init_parallel(2)
    on_device = torch.ones(3)  # made before the audit: stands for a tensor on the model's device
    with HostTensorAudit().collectives() as audit:
        dist.all_reduce(on_device * 2)
        dist.all_reduce(on_device.detach().cpu().double())
        dist.all_reduce(torch.zeros(2))  # a factory without device=
    assert audit.violations == [
        "all_reduce got a host tensor of shape (3,)",
        "all_reduce got a host tensor of shape (2,)",
    ], audit.violations


def _sampling(rank: int) -> None:
    """Eval and the logged videos sample with the SP model: same videos as without SP."""
    groups = init_parallel(2)
    reference = tiny_dit().eval()
    sharded = apply_sequence_parallel(copy.deepcopy(reference), groups)
    x0 = torch.randn(1, 3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    expected = sample(reference, x0, 1, steps=3, generator=torch.Generator().manual_seed(5))
    got = sample(sharded, x0, 1, steps=3, generator=torch.Generator().manual_seed(5))
    assert_rel_close(got, expected, "sampled video")


def _errors(rank: int) -> None:
    groups = init_parallel(2)
    check_zero_stage(2, groups.sp_size)
    with pytest.raises(ParallelError, match="zero_stage=2"):
        check_zero_stage(3, groups.sp_size)
    model = apply_sequence_parallel(tiny_dit(), groups)

    # Different noise on the two ranks (seeded by global rank): refused before it corrupts grads.
    x0 = torch.randn(1, 3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ParallelError, match="different inputs"):
        loss(model, x0, 1, generator=torch.Generator().manual_seed(10 + rank))

    # 3 frames of 2 x 6 latents in 2 x 2 patches: 3 x 1 x 3 = 9 tokens, not divisible by 2.
    model._inputs_checked = True
    odd = torch.randn(1, 3, 3, 2, 6)
    with pytest.raises(ParallelError, match="9 tokens"):
        model(odd, torch.rand(1), odd, torch.zeros(1, 1, 3, 2, 6))


def test_heads_must_divide_by_sp() -> None:
    check_heads(16, 8)
    with pytest.raises(ParallelError, match=r"\[1, 2, 3, 6\]"):
        check_heads(6, 4)


def _sp1_is_identity(rank: int) -> None:
    groups = init_parallel(1)
    assert (groups.sp_size, groups.dp_size, groups.dp_rank) == (1, 2, rank)
    model = tiny_dit()
    assert apply_sequence_parallel(model, groups) is model
    assert type(model) is DiT
    with pytest.raises(ParallelError, match="divide the world size"):
        init_parallel(3)


# One pair of processes runs every check (importing megatron-core costs ~10 s per process); each
# check's outcome is reported by its own test below.
CHECKS: dict[str, Callable[[int], None]] = {
    "equality": functools.partial(_equality, checkpointing=False),
    "equality_activation_checkpointing": functools.partial(_equality, checkpointing=True),
    "sampling": _sampling,
    "collectives_on_model_device": _collectives_on_model_device,
    "audit_catches_host_tensors": _audit_catches_host_tensors,
    "errors": _errors,
    "sp1_no_op": _sp1_is_identity,
}


def _run_checks(rank: int, out_dir: str) -> None:
    outcomes = {}
    for name, check in CHECKS.items():
        try:
            check(rank)
            outcomes[name] = None
        except Exception:
            outcomes[name] = traceback.format_exc()
        dist.barrier()  # a check that failed on one rank must not leave the other one waiting
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(outcomes))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str | None]]:
    out = tmp_path_factory.mktemp("sp_checks")
    run_ranks(2, _run_checks, str(out))
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.parametrize("check", list(CHECKS))
def test_two_process_check(check: str, outcomes: list[dict[str, str | None]]) -> None:
    for rank, ranks_outcomes in enumerate(outcomes):
        assert ranks_outcomes[check] is None, f"rank {rank}:\n{ranks_outcomes[check]}"
