"""DeepSpeed: the config dict built from a `TrainConfig`, the learning-rate schedule, initialize.

One function per decision: which device, which precision, which global batch, which schedule. The
optimizer is DeepSpeed's AdamW with `torch_adam` (torch's AdamW, no DeepSpeed kernel to compile:
starts in seconds), fused on CUDA; the schedule is a `LambdaLR` that DeepSpeed saves and restores
with its checkpoint.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from phyworld.cli import UserError
from training.checkpoint import RunShape
from training.config import TrainConfig
from training.model import DIT_CONFIGS
from training.parallel.layout import check_heads, check_sp_size, check_zero_stage


class EngineConfigError(UserError, ValueError):
    """A parallelism or optimizer setting that cannot work; the message says how to fix it."""


def on_cuda(cfg: TrainConfig) -> bool:
    """Whether this run trains on CUDA (`parallel.device`; training.distributed checks it works)."""
    return cfg.parallel.device != "cpu" and torch.cuda.is_available()


def use_bf16(cfg: TrainConfig) -> bool:
    """bf16 on GPU, fp32 on CPU (`precision: auto`), unless the config says otherwise."""
    precision = cfg.parallel.precision
    if precision not in ("auto", "bf16", "fp32"):
        raise EngineConfigError(f"parallel.precision={precision!r}: use auto, bf16 or fp32")
    if precision == "auto":
        return on_cuda(cfg)
    return precision == "bf16"


def global_batch_size(cfg: TrainConfig, dp_size: int) -> int:
    """micro batch x accumulation x data-parallel size, checked against `parallel.global_batch_size`."""
    p = cfg.parallel
    derived = p.micro_batch_size * p.grad_accum_steps * dp_size
    if p.global_batch_size and p.global_batch_size != derived:
        fixes = []
        if p.global_batch_size % (p.micro_batch_size * dp_size) == 0:
            accum = p.global_batch_size // (p.micro_batch_size * dp_size)
            fixes.append(f"set parallel.grad_accum_steps={accum}")
        per_replica = p.micro_batch_size * p.grad_accum_steps
        if p.global_batch_size % per_replica == 0:
            world = p.global_batch_size // per_replica * p.sequence_parallel_size
            fixes.append(f"launch on {world} processes (GPUs)")
        fixes.append("set parallel.global_batch_size=0 (derive it)")
        raise EngineConfigError(
            f"parallel.global_batch_size={p.global_batch_size} but micro_batch_size "
            f"({p.micro_batch_size}) x grad_accum_steps ({p.grad_accum_steps}) x data-parallel size "
            f"({dp_size} = world size / sequence_parallel_size) = {derived}. To fix it: "
            + ", or ".join(fixes)
            + "."
        )
    return derived


def run_shape(cfg: TrainConfig, world_size: int) -> RunShape:
    """The run's data-parallel x sequence-parallel layout on `world_size` processes, every rule
    checked before anything is built: SP divides the world and the heads, ZeRO-3 is not combined
    with SP, the global batch adds up. Raises `ParallelError` / `EngineConfigError` with the fix."""
    p = cfg.parallel
    check_sp_size(world_size, p.sequence_parallel_size)
    if cfg.model.size in DIT_CONFIGS:  # an unknown size is reported by build_dit
        check_heads(DIT_CONFIGS[cfg.model.size].num_heads, p.sequence_parallel_size)
    check_zero_stage(p.zero_stage, p.sequence_parallel_size)
    dp_size = world_size // p.sequence_parallel_size
    return RunShape(
        world_size=world_size,
        dp_size=dp_size,
        sp_size=p.sequence_parallel_size,
        global_batch_size=global_batch_size(cfg, dp_size),
    )


def lr_multiplier(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to 1, then constant or cosine down to `min_lr_ratio` at `max_steps`."""
    o = cfg.optim
    if o.schedule not in ("constant", "cosine"):
        raise EngineConfigError(f"optim.schedule={o.schedule!r}: use constant or cosine")
    if o.warmup_steps > 0 and step < o.warmup_steps:
        return (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return 1.0
    span = max(1, cfg.max_steps - o.warmup_steps)
    progress = min(1.0, (step - o.warmup_steps) / span)
    return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def deepspeed_config(cfg: TrainConfig, dp_size: int) -> dict[str, Any]:
    """The DeepSpeed JSON config for this run."""
    p, o = cfg.parallel, cfg.optim
    if p.zero_stage not in (0, 1, 2, 3):
        raise EngineConfigError(f"parallel.zero_stage={p.zero_stage}: use 0, 1, 2 or 3")
    lr_multiplier(0, cfg)  # validates the schedule name early
    bf16 = use_bf16(cfg)
    return {
        "train_batch_size": global_batch_size(cfg, dp_size),
        "train_micro_batch_size_per_gpu": p.micro_batch_size,
        "gradient_accumulation_steps": p.grad_accum_steps,
        "gradient_clipping": o.grad_clip,
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": o.lr,
                "betas": list(o.betas),
                "eps": o.eps,
                "weight_decay": o.weight_decay,
                "torch_adam": True,
                # torch's fused CUDA kernel: one launch for every parameter instead of a few each
                **({"fused": True} if on_cuda(cfg) else {}),
            },
        },
        "bf16": {"enabled": bf16},
        "zero_optimization": {
            "stage": int(
                p.zero_stage
            ),  # a plain int: DeepSpeed pickles its config into the checkpoint
            # Gather the full fp32 weights on save so `weights.pt` needs no offline conversion.
            "stage3_gather_16bit_weights_on_model_save": p.zero_stage == 3,
        },
        "steps_per_print": 10**9,  # our own step logs (training.metrics) replace DeepSpeed's
        "wall_clock_breakdown": False,
    }


def initialize(model: torch.nn.Module, cfg: TrainConfig, groups: Any) -> Any:
    """Wrap `model` in a DeepSpeed engine with AdamW, the schedule and the data-parallel group."""
    import deepspeed

    ds_config = deepspeed_config(cfg, groups.dp_size)
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        model_parameters=[p for p in model.parameters() if p.requires_grad],
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_multiplier(step, cfg)
        ),
        mpu=groups.deepspeed_mpu() if groups.sp_size > 1 else None,
        config=ds_config,
    )
    return engine
