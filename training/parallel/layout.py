"""Which data-parallel x sequence-parallel layouts can run: each rule a function whose error names
the fix. No process group is needed, so a launch can be checked before anything starts (and a
test can check every documented launch: tests/training/test_engine_config.py)."""

from __future__ import annotations

from phyworld.cli import UserError


class ParallelError(UserError, ValueError):
    """A parallel layout that cannot work; the message names the fix."""


def check_sp_size(world_size: int, sp_size: int) -> None:
    """The world must split into equal sequence-parallel groups."""
    if sp_size < 1 or world_size % sp_size != 0:
        raise ParallelError(
            f"parallel.sequence_parallel_size={sp_size} must be >= 1 and divide the world size "
            f"{world_size}; pick one of {[d for d in range(1, world_size + 1) if world_size % d == 0]}"
        )


def check_zero_stage(zero_stage: int, sp_size: int) -> None:
    """Reject layouts DeepSpeed computes wrongly (ZeRO-3 with SP > 1 in deepspeed 0.19)."""
    if zero_stage == 3 and sp_size > 1:
        raise ParallelError(
            f"ZeRO stage 3 with sequence_parallel_size={sp_size} is not supported: "
            "DeepSpeed's ZeRO-3 does not sum gradients over the sequence-parallel group "
            "correctly. Use parallel.zero_stage=2 (or 1) with sequence parallelism."
        )


def valid_sp_sizes(num_heads: int) -> list[int]:
    """The sequence-parallel sizes a model with `num_heads` heads allows."""
    return [d for d in range(1, num_heads + 1) if num_heads % d == 0]


def check_heads(num_heads: int, sp_size: int) -> None:
    """Ulysses gives each SP rank H/SP whole heads."""
    if num_heads % sp_size:
        raise ParallelError(
            f"parallel.sequence_parallel_size={sp_size} does not divide the model's {num_heads} "
            f"attention heads; with this model use one of {valid_sp_sizes(num_heads)}"
        )


def check_token_count(num_tokens: int, sp_size: int, grid: tuple[int, int, int]) -> None:
    """Token shards must be equal: N = T' x H' x W' must divide by SP."""
    if num_tokens % sp_size:
        raise ParallelError(
            f"{num_tokens} tokens (latent grid t x h x w = {grid[0]} x {grid[1]} x {grid[2]}) do "
            f"not divide by parallel.sequence_parallel_size={sp_size}; change data.frames or "
            "data.resolution (or model.patch_t / patch_hw) so they do, or use another SP size"
        )
