"""Process groups: world = data parallel (DP) x sequence parallel (SP).

This module is the one object that knows the process groups. They are built with megatron-core's
`parallel_state`, whose context-parallel dimension is our sequence-parallel group. Megatron's
default order ("tp-cp-ep-dp-pp", tensor parallel = 1) makes the SP ranks of one group adjacent
global ranks, so with ranks numbered node by node (torchrun, srun) an SP group sits on one node
whenever SP divides the GPUs per node: its all-to-alls then stay on NVLink.

    world 8, SP 2:  SP groups {0,1} {2,3} {4,5} {6,7};  DP groups {0,2,4,6} {1,3,5,7}

Gradient math with DeepSpeed (see `DeepSpeedMPU`): every SP rank holds the same micro-batch and
computes the gradient of its own tokens, so parameter gradients are SUMMED over the SP group and
AVERAGED over the DP group. DeepSpeed does exactly that when handed the adapter below as `mpu`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist
from megatron.core import parallel_state

from phyworld.cli import UserError
from training.parallel.device_shim import install_cpu_device_shim


class ParallelError(UserError, ValueError):
    """A parallel layout that cannot work; the message names the fix."""


@dataclass(frozen=True)
class ParallelGroups:
    """This rank's place in the DP x SP grid and the process groups of each axis."""

    rank: int
    world_size: int
    dp_rank: int
    dp_size: int
    sp_rank: int
    sp_size: int
    dp_group: dist.ProcessGroup
    sp_group: dist.ProcessGroup
    dp_sp_group: dist.ProcessGroup  # all ranks holding one model replica's data: DP x SP

    def deepspeed_mpu(self) -> DeepSpeedMPU:
        """The object to pass as `mpu=` to `deepspeed.initialize`."""
        return DeepSpeedMPU(self)

    def check_zero_stage(self, zero_stage: int) -> None:
        """Reject layouts DeepSpeed computes wrongly (ZeRO-3 with SP > 1 in deepspeed 0.19)."""
        if zero_stage == 3 and self.sp_size > 1:
            raise ParallelError(
                f"ZeRO stage 3 with sequence_parallel_size={self.sp_size} is not supported: "
                "DeepSpeed's ZeRO-3 does not sum gradients over the sequence-parallel group "
                "correctly. Use parallel.zero_stage=2 (or 1) with sequence parallelism."
            )

    def __str__(self) -> str:
        return (
            f"rank {self.rank}/{self.world_size}: dp {self.dp_rank}/{self.dp_size}, "
            f"sp {self.sp_rank}/{self.sp_size}"
        )


class DeepSpeedMPU:
    """The model-parallel-unit interface DeepSpeed reads, mapped onto our groups.

    - `get_data_parallel_*`: the pure DP group (what the data loader shards over).
    - `get_model_parallel_*`, `get_tensor_model_parallel_*`, `get_pipeline_model_parallel_*`:
      megatron's (size 1 here; we use no tensor or pipeline parallelism).
    - `get_sequence_parallel_*`: the SP group; `get_sequence_data_parallel_*`: DP x SP.
      With these DeepSpeed all-reduces gradients over DP x SP and divides by DP only (a sum over
      SP, a mean over DP), and ZeRO-1/2 partition optimizer states over DP x SP.

    There is deliberately no `initialize_sequence_parallel` attribute: its presence switches
    DeepSpeed to its own, different, sequence-parallel mode.
    """

    def __init__(self, groups: ParallelGroups) -> None:
        self._g = groups

    # data parallel
    def get_data_parallel_group(self) -> dist.ProcessGroup:
        return self._g.dp_group

    def get_data_parallel_world_size(self) -> int:
        return self._g.dp_size

    def get_data_parallel_rank(self) -> int:
        return self._g.dp_rank

    def get_data_parallel_group_ranks(self) -> list[int]:
        return dist.get_process_group_ranks(self._g.dp_group)

    # model / tensor / pipeline parallel (all size 1: megatron's groups)
    def get_model_parallel_group(self) -> dist.ProcessGroup:
        return parallel_state.get_model_parallel_group()

    def get_model_parallel_world_size(self) -> int:
        return dist.get_world_size(parallel_state.get_model_parallel_group())

    def get_model_parallel_rank(self) -> int:
        return dist.get_rank(parallel_state.get_model_parallel_group())

    def get_tensor_model_parallel_group(self) -> dist.ProcessGroup:
        return parallel_state.get_tensor_model_parallel_group()

    def get_tensor_model_parallel_world_size(self) -> int:
        return parallel_state.get_tensor_model_parallel_world_size()

    def get_tensor_model_parallel_rank(self) -> int:
        return parallel_state.get_tensor_model_parallel_rank()

    def get_tensor_model_parallel_src_rank(self) -> int:
        return parallel_state.get_tensor_model_parallel_src_rank()

    def get_pipeline_model_parallel_group(self) -> dist.ProcessGroup:
        return parallel_state.get_pipeline_model_parallel_group()

    def get_pipeline_model_parallel_world_size(self) -> int:
        return parallel_state.get_pipeline_model_parallel_world_size()

    def get_pipeline_model_parallel_rank(self) -> int:
        return parallel_state.get_pipeline_model_parallel_rank()

    # sequence parallel
    def get_sequence_parallel_group(self) -> dist.ProcessGroup:
        return self._g.sp_group

    def get_sequence_parallel_world_size(self) -> int:
        return self._g.sp_size

    def get_sequence_parallel_rank(self) -> int:
        return self._g.sp_rank

    def get_sequence_data_parallel_group(self) -> dist.ProcessGroup:
        return self._g.dp_sp_group

    def get_sequence_data_parallel_world_size(self) -> int:
        return self._g.dp_size * self._g.sp_size

    def get_sequence_data_parallel_rank(self) -> int:
        return dist.get_rank(self._g.dp_sp_group)


def init_parallel(sequence_parallel_size: int, timeout_s: int | None = None) -> ParallelGroups:
    """Build the DP x SP process groups; call after `torch.distributed` is initialised.

    `sequence_parallel_size` must divide the world size; DP is world / SP. SP = 1 is the plain
    data-parallel layout (every SP collective becomes a no-op).
    """
    if not dist.is_initialized():
        raise ParallelError(
            "init_parallel needs torch.distributed initialised first "
            "(deepspeed.init_distributed() or torch.distributed.init_process_group())"
        )
    world = dist.get_world_size()
    sp = int(sequence_parallel_size)
    if sp < 1 or world % sp != 0:
        raise ParallelError(
            f"parallel.sequence_parallel_size={sp} must be >= 1 and divide the world size "
            f"{world}; pick one of {[d for d in range(1, world + 1) if world % d == 0]}"
        )
    install_cpu_device_shim()
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    kwargs = {} if timeout_s is None else {"distributed_timeout_minutes": max(1, timeout_s // 60)}
    # Gloo side-groups are megatron's for its CPU-side optimizer; we never use them.
    parallel_state.initialize_model_parallel(
        context_parallel_size=sp, create_gloo_process_groups=False, **kwargs
    )
    sp_group = parallel_state.get_context_parallel_group()
    dp_group = parallel_state.get_data_parallel_group(with_context_parallel=False)
    return ParallelGroups(
        rank=dist.get_rank(),
        world_size=world,
        dp_rank=dist.get_rank(dp_group),
        dp_size=dist.get_world_size(dp_group),
        sp_rank=dist.get_rank(sp_group),
        sp_size=dist.get_world_size(sp_group),
        dp_group=dp_group,
        sp_group=sp_group,
        dp_sp_group=parallel_state.get_data_parallel_group(with_context_parallel=True),
    )


def destroy_parallel() -> None:
    """Forget megatron's groups (before destroying the process group, or between tests)."""
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
