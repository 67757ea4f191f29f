"""Train a video DiT with DeepSpeed: `python -m training CONFIG.yaml [key=value ...]`.

Launched by torchrun or srun (or plain python for one process). Reads top to bottom: join the
process group, make the run folder, build autoencoder, model, engine, EMA and data, resume from
the newest checkpoint if there is one, then loop: encode, flow-matching loss, backward, step,
EMA, logs, checkpoints, and a stop on Slurm's signals (checkpoint, exit; after the time-limit
warning also a requeue).
"""

from __future__ import annotations

import itertools
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from phyworld.config import load_config, to_yaml
from phyworld.storage import write_bytes
from training import checkpoint, diffusion
from training.autoencoders import build_autoencoder
from training.config import TrainConfig
from training.data import build_dataloader, to_unit_range
from training.distributed import init_distributed
from training.ema import EMA
from training.engine import initialize, run_shape, use_bf16
from training.metrics import Metrics, log_sample_ids, peak_tflops, train_flops_per_sample
from training.model import DIT_CONFIGS, build_dit, count_params, describe
from training.parallel.groups import destroy_parallel, init_parallel
from training.parallel.sequence import apply_sequence_parallel
from training.preemption import Agreed, PreemptionHandler, StepWatchdog, requeue


def log0(message: str) -> None:
    """Print on rank 0 only."""
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(message, flush=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def batches(loader: Any) -> Iterator[dict[str, torch.Tensor]]:
    """Micro-batches forever: each pass over the loader is one epoch (its state says which)."""
    while True:
        yield from loader


@torch.no_grad()
def to_latents(
    batch: dict[str, torch.Tensor], autoencoder: Any, resolution: int, device: torch.device
) -> torch.Tensor:
    """A micro-batch as clean latents x0 (B, C, T, h, w)."""
    if "latents" in batch:
        return batch["latents"].to(device, non_blocking=True)
    video = to_unit_range(batch["video"].to(device, non_blocking=True), resolution)
    return autoencoder.encode(video)


def latent_shape(
    batch: dict[str, torch.Tensor], autoencoder: Any, resolution: int
) -> tuple[int, ...]:
    """The shape (B, C, T, h, w) `to_latents` gives a micro-batch, without encoding it."""
    if "latents" in batch:  # a latent dataset keeps the size it was encoded at
        return tuple(batch["latents"].shape)
    B, _, T = batch["video"].shape[:3]
    side = resolution // autoencoder.downsample
    return (B, autoencoder.latent_channels, T, side, side)


def mean_over_ranks(value: torch.Tensor) -> float:
    """The mean of a scalar over all ranks: a collective and a host sync (logging steps only)."""
    t = value.detach().double().reshape(1)
    dist.all_reduce(t)
    return t.item() / dist.get_world_size()


def main(argv: list[str]) -> None:
    cfg = load_config(TrainConfig, argv)

    # Join the process group and build the data-parallel x sequence-parallel groups.
    env = init_distributed(cfg.parallel.collective_timeout_s, cfg.parallel.device)
    groups = init_parallel(cfg.parallel.sequence_parallel_size, cfg.parallel.collective_timeout_s)
    watchdog = StepWatchdog(cfg.parallel.collective_timeout_s, env.rank)
    preemption = PreemptionHandler()
    cfg, notes = checkpoint.fit_layout(cfg, groups)  # the run's global batch over these ranks
    for note in notes:
        log0(note)
    shape = run_shape(cfg, env.world_size)  # the layout adds up, before the model is built
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", 0))
    cpus = len(os.sched_getaffinity(0))
    log0(
        f"{groups} | global batch {shape.global_batch_size} | SLURM_RESTART_COUNT={restarts} | "
        f"{cpus} CPUs per rank (SLURM_CPUS_PER_TASK={os.environ.get('SLURM_CPUS_PER_TASK', '-')})"
    )
    if cfg.data.num_workers >= cpus:
        log0(
            f"warning: data.num_workers={cfg.data.num_workers} loader workers share {cpus} CPUs "
            "with their rank: give each task more CPUs (srun --cpus-per-task, slurm/lib.sh) or "
            "lower data.num_workers"
        )

    # The run folder: resolved config next to checkpoints and TensorBoard events.
    run_dir = Path(cfg.output_dir)
    if env.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_bytes(run_dir / "config.yaml", to_yaml(cfg).encode())
    dist.barrier()

    # Seeds: SP ranks of one replica share the data-parallel rank. The noise is drawn per sample
    # (diffusion.sample_generators), the same whatever the layout.
    seed_everything(cfg.seed * 1000 + groups.dp_rank)

    # Frozen autoencoder, DiT (optionally from another run's weights), DeepSpeed engine, EMA.
    autoencoder = build_autoencoder(cfg.vae).to(env.device)
    model = build_dit(cfg.model, autoencoder.latent_channels)
    log0(describe(model, cfg.model.size))
    num_params = count_params(model)
    init = None
    if cfg.checkpoint.init_from:  # verified, and checked to be weights of this model
        init = checkpoint.init_weights(cfg.checkpoint.init_from, cfg.model)
        model.load_state_dict(init["model"])
        log0(f"initialised from {cfg.checkpoint.init_from}")
    model = apply_sequence_parallel(model, groups)
    if cfg.parallel.compile:
        model.compile_blocks()
    engine = initialize(model, cfg, groups)
    ema = EMA(engine.module, cfg.optim.ema_decay)
    if init is not None:
        ema.load_full(init["ema"])
    dtype = torch.bfloat16 if use_bf16(cfg) else torch.float32

    # Data: sharded over data-parallel ranks, shuffled, resumable.
    loader = build_dataloader(
        cfg.data,
        micro_batch_size=cfg.parallel.micro_batch_size,
        sequence_parallel_size=groups.sp_size,
        run_dir=str(run_dir),
        pin_memory=env.device.type == "cuda",
        global_batch_size=shape.global_batch_size,
    )

    # Resume from the newest intact checkpoint of this run, if any (a corrupt one is set aside).
    step, resumed = 0, None
    if cfg.checkpoint.resume:
        resumed = checkpoint.resume(run_dir, engine, ema, loader, cfg, shape)
    if resumed is not None:
        found, step = resumed
        log0(f"resumed from {found} at step {step}")

    # Throughput and MFU: the tokens per sample follow from the first micro-batch's shape (a
    # latent dataset keeps the size it was encoded at); it is then trained on as usual.
    stream = batches(loader)
    first = next(stream)
    stream = itertools.chain([first], stream)
    tokens = int(np.prod(engine.module.grid(latent_shape(first, autoencoder, cfg.data.resolution))))
    size = DIT_CONFIGS[cfg.model.size]
    metrics = Metrics(
        run_dir,
        rank=env.rank,
        world_size=env.world_size,
        flops_per_sample=train_flops_per_sample(num_params, tokens, size.depth, size.hidden_size),
        tokens_per_sample=tokens,
        peak_tflops_per_device=peak_tflops(cfg.logging.peak_tflops),
    )
    metrics.log_text("run/slurm_restart_count", str(restarts), step)

    stop, agreed = False, Agreed()
    while step < cfg.max_steps and not stop:
        watchdog.beat(step)
        # One optimizer step: grad_accum_steps micro-batches; DeepSpeed steps on the last one.
        # The losses stay on the device: reading them syncs the host, so only logging steps do.
        losses, sample_ids = [], []
        for _ in range(cfg.parallel.grad_accum_steps):
            batch = next(stream)
            x0 = to_latents(batch, autoencoder, cfg.data.resolution, env.device).to(dtype)
            sample_ids += batch["index"].tolist()
            loss = diffusion.loss(
                engine,
                x0,
                cfg.diffusion.cond_frames,
                cfg.diffusion.timestep_sampling,
                diffusion.sample_generators(cfg.seed, step, batch["index"], env.device),
                cfg.diffusion.prediction,
            )
            engine.backward(loss)
            engine.step()
            losses.append(loss.detach())
        ema.update()
        step += 1
        if cfg.logging.sample_ids:
            log_sample_ids(run_dir, step, sample_ids, replica=groups.sp_rank > 0)
        log_now = step % cfg.logging.every_steps == 0 or step == cfg.max_steps
        loss_mean = mean_over_ranks(torch.stack(losses).double().mean()) if log_now else 0.0
        grad_norm = engine.get_global_grad_norm() if log_now else 0.0
        grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
        metrics.step(
            step,
            loss=loss_mean,
            lr=engine.get_lr()[0],
            grad_norm=grad_norm,
            samples=shape.global_batch_size,
            log=log_now,
        )

        if cfg.logging.video_every_steps and step % cfg.logging.video_every_steps == 0:
            watchdog.beat(step, "sampling a video")
            log_video(metrics, engine.module, autoencoder, x0[:1], cfg=cfg, step=step)

        # Stop (time limit, cancel, preemption) and save-on-demand, agreed by all ranks.
        agreed = preemption.poll()
        stop = agreed.stop
        if stop or agreed.save or step % cfg.checkpoint.every_steps == 0 or step == cfg.max_steps:
            watchdog.beat(step, "checkpoint save")
            path = checkpoint.save(
                run_dir,
                step,
                engine=engine,
                ema=ema,
                loader=loader,
                cfg=cfg,
                shape=shape,
                keep_last=cfg.checkpoint.keep_last,
            )
            log0(f"saved {path}")

    agreed = preemption.finish(agreed)
    if stop:
        preemption.ignore_further_signals()
        log0(f"stopped by signal after step {step}; checkpoint saved")
        if not agreed.requeue:
            log0("SIGTERM (scancel, preemption): not asking for a requeue, Slurm decides")
        elif env.rank == 0 and not requeue():
            log0("not under Slurm: run the same command again to resume")
    else:  # the last step is always saved (step == max_steps)
        log0(f"done: {step} steps")
    watchdog.close()
    metrics.close()
    engine.destroy()
    dist.barrier()
    destroy_parallel()
    dist.destroy_process_group()


@torch.no_grad()
def log_video(
    metrics: Metrics,
    model: torch.nn.Module,
    autoencoder: Any,
    x0: torch.Tensor,
    *,
    cfg: TrainConfig,
    step: int,
) -> None:
    """Continue one training video from its first frames and log it beside the truth (all ranks)."""
    model.eval()
    generator = torch.Generator(device=x0.device).manual_seed(step)  # not the training generators
    generated = diffusion.sample(
        model,
        x0,
        cfg.diffusion.cond_frames,
        cfg.diffusion.sample_steps,
        generator,
        prediction=cfg.diffusion.prediction,
    )
    model.train()
    metrics.video(step, autoencoder.decode(x0.float()), autoencoder.decode(generated.float()))


if __name__ == "__main__":
    main(sys.argv[1:])
