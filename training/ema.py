"""Exponential moving average of the model weights, kept in fp32 beside the DeepSpeed engine.

Each rank averages the weights it holds: the whole parameter under ZeRO 0/1/2, its own partition
(`param.ds_tensor`) under ZeRO-3, so the EMA costs no communication per step and is sharded
exactly like the model. `consolidated()` gathers the full fp32 EMA for `weights.pt` (a collective
under ZeRO-3: every rank calls it).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def _local(param: nn.Parameter) -> torch.Tensor:
    """The part of `param` this rank holds: its ZeRO-3 partition, or the parameter itself."""
    return param.ds_tensor if hasattr(param, "ds_tensor") else param.data


class EMA:
    """fp32 shadow weights: ema = decay * ema + (1 - decay) * weights, once per optimizer step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.shadow = [_local(p).detach().float().clone() for p in self.params]

    @property
    def partitioned(self) -> bool:
        """True under ZeRO-3: each rank holds slices, and `consolidated()` is a collective."""
        return any(hasattr(p, "ds_tensor") for p in self.params)

    @torch.no_grad()
    def update(self) -> None:
        """Move the shadow weights towards the current weights (one fused kernel on CUDA)."""
        torch._foreach_lerp_(
            self.shadow, [_local(p).float() for p in self.params], 1.0 - self.decay
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        """This rank's shadow weights (its partitions under ZeRO-3), for the per-rank checkpoint file."""
        return {name: t.cpu().clone() for name, t in zip(self.names, self.shadow)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore this rank's shadow weights saved by `state_dict` (same model, same world size)."""
        missing = set(self.names) - set(state)
        if missing:
            raise ValueError(
                f"EMA state lacks {len(missing)} parameters, e.g. {sorted(missing)[:3]}"
            )
        for name, t in zip(self.names, self.shadow):
            if state[name].shape != t.shape:
                raise ValueError(
                    f"EMA parameter {name}: saved shape {tuple(state[name].shape)}, "
                    f"model shape {tuple(t.shape)}"
                )
            t.copy_(state[name])

    def load_full(self, full: dict[str, torch.Tensor]) -> None:
        """Start from consolidated EMA weights (as in `weights.pt`); slices this rank's part under ZeRO-3."""
        for name, t, p in zip(self.names, self.shadow, self.params):
            src = full[name].float().flatten()
            if hasattr(p, "ds_tensor"):
                # ZeRO-3 partitions are equal slices of the flattened parameter, the last one padded.
                start = dist.get_rank(group=p.ds_process_group) * t.numel()
                part = src[start : start + t.numel()]
                t.zero_()
                t[: part.numel()].copy_(part)
            else:
                t.copy_(src.view_as(t))

    @torch.no_grad()
    def consolidated(self) -> dict[str, torch.Tensor]:
        """The full EMA weights on CPU, keyed like `model.state_dict()` (collective under ZeRO-3)."""
        out: dict[str, torch.Tensor] = {}
        for name, ema, p in zip(self.names, self.shadow, self.params):
            if not hasattr(p, "ds_tensor"):
                out[name] = ema.cpu().clone()
                continue
            # Gather the fp32 partitions over the group ZeRO-3 partitioned this parameter over.
            world = dist.get_world_size(group=p.ds_process_group)
            parts = [torch.empty_like(ema) for _ in range(world)]
            dist.all_gather(parts, ema, group=p.ds_process_group)
            out[name] = torch.cat(parts)[: p.ds_numel].view(p.ds_shape).cpu()
        return out
