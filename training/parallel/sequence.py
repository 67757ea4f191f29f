"""Ulysses sequence parallelism for the video DiT.

The SP ranks of one group hold the same micro-batch. Each embeds the whole input, keeps its
contiguous 1/SP of the tokens (and of their (t, h, w) positions, so 3D RoPE rotates every token by
its global position) and runs every block on that shard only: adaLN modulation, norms, MLPs and
the final layer are token-wise. Attention is the one place that needs all tokens: an all-to-all
turns the sequence shards of q, k, v into head shards (every rank then sees all N tokens for
H/SP heads), attention runs, and a second all-to-all turns the head shards back into sequence
shards. Before unpatchify the small output patches (C x patch volume channels per token) are
all-gathered, so the model returns the full prediction and the loss is the same number on every
SP rank and the same number as without SP.

Gradients: the gather's backward keeps each rank's own slice (it does not sum), and the slice
after `embed` zero-fills the other ranks' tokens, so each rank's parameter gradient is the
contribution of its own tokens; summing over the SP group (DeepSpeed does, with
`ParallelGroups.deepspeed_mpu()`) gives exactly the unsharded gradient.

    tokens per rank              attention per rank              bytes per rank per layer
    (B, N/SP, D) --a2a--> q,k,v (B, H/SP, N, d) --a2a--> (B, N/SP, D)   4 * B*N*D/SP * (SP-1)/SP

Limits: the heads must divide by SP (DiT-S: 1, 2, 3, 6; DiT-B: 1, 2, 3, 4, 6, 12; DiT-L and
DiT-XL: 1, 2, 4, 8, 16) and the token count N by SP; both are checked with a clear error
(`training.parallel.layout`).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from megatron.core.tensor_parallel import mappings
from torch import nn

from training.model import DiT, ScaledDotProductAttention
from training.parallel.groups import ParallelGroups
from training.parallel.layout import ParallelError, check_heads, check_token_count

# ---------------------------------------------------------------------------------------------
#                          The two exchanges: sequence shards <-> head shards
# ---------------------------------------------------------------------------------------------


def sequence_to_heads(x: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    """(..., H, N/SP, d) sharded on tokens -> (..., H/SP, N, d) sharded on heads."""
    sp = group.size()
    *lead, H, n, d = x.shape
    # (SP, ..., H/SP, n, d): chunk j (heads of group j) goes to rank j
    x = x.reshape(*lead, sp, H // sp, n, d).movedim(-4, 0)
    x = mappings.all_to_all(group, x.contiguous())  # chunk j now holds rank j's tokens
    x = x.movedim(0, -3)  # (..., H/SP, SP, n, d)
    return x.reshape(*lead, H // sp, sp * n, d)


def heads_to_sequence(x: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    """(..., H/SP, N, d) sharded on heads -> (..., H, N/SP, d) sharded on tokens."""
    sp = group.size()
    *lead, h, N, d = x.shape
    # (SP, ..., h, n, d): chunk j (tokens of shard j) goes to rank j
    x = x.reshape(*lead, h, sp, N // sp, d).movedim(-3, 0)
    x = mappings.all_to_all(group, x.contiguous())  # chunk j now holds rank j's heads
    x = x.movedim(0, -4)  # (..., SP, h, n, d)
    return x.reshape(*lead, sp * h, N // sp, d)


class UlyssesAttention(nn.Module):
    """Drop-in for `ScaledDotProductAttention` on token shards: a2a, full attention, a2a back."""

    def __init__(self, inner: nn.Module, group: dist.ProcessGroup):
        super().__init__()
        self.inner = inner
        self.group = group

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # One exchange for q, k and v together: a third of the latency of three.
        qkv = sequence_to_heads(torch.stack([q, k, v]), self.group)  # (3, B, H/SP, N, d)
        out = self.inner(*qkv.unbind(0))  # (B, H/SP, N, d)
        return heads_to_sequence(out, self.group)  # (B, H, N/SP, d)


# ---------------------------------------------------------------------------------------------
#                                The sharded forward of the DiT
# ---------------------------------------------------------------------------------------------


def shard_tokens(x: torch.Tensor, dim: int, rank: int, size: int) -> torch.Tensor:
    """This rank's contiguous 1/size of `x` along `dim`; the backward zero-fills the rest."""
    n = x.shape[dim] // size
    return x.narrow(dim, rank * n, n)


def gather_tokens(x: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    """(B, N/SP, P) -> (B, N, P); the backward keeps this rank's slice (no sum over ranks)."""
    full = mappings.gather_from_sequence_parallel_region(
        x.transpose(0, 1).contiguous(), tensor_parallel_output_grad=False, group=group
    )  # (N, B, P): megatron gathers along the first dim
    return full.transpose(0, 1)


class SequenceParallelDiT(DiT):
    """A `DiT` whose forward runs on this rank's token shard (made by `apply_sequence_parallel`).

    Same parameters and state_dict keys as the `DiT` it was made from, so checkpoints move
    freely between SP sizes.
    """

    sp_group: dist.ProcessGroup
    sp_rank: int
    sp_size: int
    _inputs_checked: bool

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Same contract as `DiT.forward`; every rank of the SP group must call it together."""
        if not self._inputs_checked:
            check_same_inputs(self.sp_group, x_t, t, cond)
            self._inputs_checked = True
        tokens, positions = self.embed(x_t, cond, mask)  # (B, N, D), (N, 3)
        check_token_count(tokens.shape[1], self.sp_size, self.grid(x_t.shape))
        tokens = shard_tokens(tokens, 1, self.sp_rank, self.sp_size)  # (B, N/SP, D)
        positions = shard_tokens(positions, 0, self.sp_rank, self.sp_size)  # global (t, h, w)
        patches = self.backbone(tokens, positions, t)  # (B, N/SP, C * patch volume)
        return self.unpatchify(gather_tokens(patches, self.sp_group), x_t.shape)


# ---------------------------------------------------------------------------------------------
#                                      Checks and the entry point
# ---------------------------------------------------------------------------------------------


def check_same_inputs(group: dist.ProcessGroup, *tensors: torch.Tensor) -> None:
    """Fail loudly if the SP ranks of a group were handed different micro-batches or noise.

    The sums stay on the inputs' device: NCCL groups have no host backend.
    """
    local = torch.stack([x.detach().double().sum() for x in tensors])
    every = [torch.empty_like(local) for _ in range(group.size())]
    dist.all_gather(every, local, group=group)
    if any(not torch.equal(every[0], other) for other in every[1:]):
        raise ParallelError(
            "the ranks of a sequence-parallel group got different inputs (data or noise): shard "
            "the data loader over data-parallel ranks only and seed the noise with the "
            "data-parallel rank (ParallelGroups.dp_rank), not the global rank"
        )


def apply_sequence_parallel(model: DiT, groups: ParallelGroups, force: bool = False) -> DiT:
    """Make `model` run on token shards over `groups.sp_group`; SP = 1 returns it unchanged.

    Changes the model in place (its class and its attention cores; no parameter is added or
    renamed) and returns it. `force` applies the SP code path even at SP = 1 (to measure its
    overhead in `bench/sequence_parallel.py`).
    """
    if groups.sp_size == 1 and not force:
        return model
    if not isinstance(model, DiT):
        raise TypeError(f"apply_sequence_parallel expects a training.model.DiT, got {type(model)}")
    check_heads(model.num_heads, groups.sp_size)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, ScaledDotProductAttention):
                setattr(module, name, UlyssesAttention(child, groups.sp_group))
    model.__class__ = SequenceParallelDiT
    model.sp_group, model.sp_rank, model.sp_size = groups.sp_group, groups.sp_rank, groups.sp_size
    model._inputs_checked = False
    return model
