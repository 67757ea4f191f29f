"""Training our video VAE: `python -m training.vae CONFIG.yaml [key=value ...]` (configs/vae/).

The model is `training.autoencoders.VideoVAE`; this file is its trainer. It trains on random clips
of a datagen dataset, then scales the latents to zero mean and unit variance over the held-out
videos and saves the VAE with its held-out reconstruction PSNR (`save_video_vae`). The velocity
error of its reconstructions (the paper's "VAE" row) is scoring, so it is eval's:
`python -m eval.vae` measures this or any other autoencoder with the eval job's parsers.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from phyworld.config import load_config, to_dict
from phyworld.data.shards import iter_samples
from training.autoencoders import (
    VAE_JSON,
    AutoencoderError,
    FrozenAutoencoder,
    VideoVAE,
    VideoVAEConfig,
    save_video_vae,
)
from training.data import decode_frames, video_tensor

__all__ = ["VAE_JSON", "VAETrainConfig", "held_out_stats", "main", "train_vae"]


@dataclass
class VAETrainConfig:
    """Training our video VAE on a datagen dataset; weights land in `output_dir`."""

    data: str = "???"  # datagen dataset: local directory or s3://bucket/prefix
    eval_data: str = ""  # held-out videos; default: the first `eval_videos` of `data`
    output_dir: str = "???"  # point vae.path here (with vae.kind=ours) to use the VAE
    model: VideoVAEConfig = field(default_factory=VideoVAEConfig)
    resolution: int = 128
    clip_frames: int = 4  # random clips of this many frames (the model is causal-free, T-agnostic)
    batch_size: int = 8
    steps: int = 20_000
    lr: float = 2e-4
    kl_weight: float = 1e-6
    shuffle_buffer: int = 512  # videos held in memory to draw clips from
    eval_videos: int = 32
    log_every: int = 50
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda


def pick_device(name: str) -> torch.device:
    """`auto`: the GPU if there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def iter_videos(root: str, resolution: int) -> Iterator[torch.Tensor]:
    """Videos (3, T, H, W) in [-1, 1] of a datagen dataset, in order."""
    for sample in iter_samples(root):
        frames = decode_frames(sample["frames"])
        yield video_tensor(frames, frames.shape[0], resolution)


def held_out(root: str, count: int) -> list[dict[str, Any]]:
    """The first `count` samples of a datagen dataset (the held-out videos)."""
    samples = list(itertools.islice(iter_samples(root), count))
    if not samples:
        raise AutoencoderError(f"no held-out videos: {root} is empty")
    return samples


def clip_batches(
    videos: Iterator[torch.Tensor], cfg: VAETrainConfig, rng: np.random.Generator
) -> Iterator[torch.Tensor]:
    """Endless batches (B, 3, clip_frames, H, W) of random clips from a shuffle buffer."""
    buffer: list[torch.Tensor] = []
    for video in videos:
        if video.shape[1] < cfg.clip_frames:
            raise AutoencoderError(
                f"videos have {video.shape[1]} frames, fewer than clip_frames={cfg.clip_frames}"
            )
        if len(buffer) < cfg.shuffle_buffer:
            buffer.append(video)
        else:
            buffer[rng.integers(len(buffer))] = video
        if len(buffer) >= min(cfg.batch_size, cfg.shuffle_buffer):
            clips = []
            for i in rng.integers(len(buffer), size=cfg.batch_size):
                start = rng.integers(buffer[i].shape[1] - cfg.clip_frames + 1)
                clips.append(buffer[i][:, start : start + cfg.clip_frames])
            yield torch.stack(clips)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-video PSNR in dB of videos in [-1, 1] (B, 3, T, H, W), on the [0, 255] scale."""
    mse = ((a.float() - b.float()) / 2).pow(2).flatten(1).mean(1)
    return -10 * torch.log10(mse.clamp_min(1e-12))


@torch.no_grad()
def held_out_stats(
    ae: FrozenAutoencoder, samples: list[dict[str, Any]], resolution: int, device: torch.device
) -> tuple[dict[str, Any], list[torch.Tensor], list[torch.Tensor]]:
    """Reconstruction PSNR (dB, mean over videos) and latent mean/std of an autoencoder on
    datagen samples, with the videos and their reconstructions, each (3, T, H, W) in [-1, 1]."""
    scores, latents, videos, recons = [], [], [], []
    for sample in samples:
        frames = decode_frames(sample["frames"])
        x = video_tensor(frames, frames.shape[0], resolution)[None].to(device)  # (1, 3, T, H, W)
        z = ae.encode(x)
        recon = ae.decode(z)
        scores.append(psnr(recon, x).item())
        latents.append(z.flatten())
        videos.append(x[0].cpu())
        recons.append(recon[0].cpu())
    z = torch.cat(latents)
    stats = {
        "psnr_db": float(np.mean(scores)),
        "videos": len(samples),
        "latent_mean": z.mean().item(),
        "latent_std": z.std().item(),
    }
    return stats, videos, recons


def train_vae(
    cfg: VAETrainConfig, videos: Iterator[torch.Tensor], eval_samples: list[dict[str, Any]]
) -> dict:
    """Train our VAE on clips of `videos` (3, T, H, W), save it to cfg.output_dir; returns the
    held-out metrics on `eval_samples` (datagen samples, see `held_out_stats`)."""
    from tqdm import tqdm

    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    vae = VideoVAE(VideoVAEConfig(**to_dict(cfg.model))).to(device)  # a plain dataclass
    n_params = sum(p.numel() for p in vae.parameters())
    print(
        f"VideoVAE: {n_params / 1e6:.2f}M parameters, latents {cfg.model.latent_channels} x "
        f"T x H/{cfg.model.downsample} x W/{cfg.model.downsample}",
        flush=True,
    )
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    batches = clip_batches(videos, cfg, np.random.default_rng(cfg.seed))
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    start = time.time()
    bar = tqdm(range(1, cfg.steps + 1), desc="vae", mininterval=5, file=sys.stdout)
    for step in bar:
        x = next(batches).to(device)  # (B, 3, clip, H, W)
        recon, kl = vae(x, generator)
        l1 = (recon - x).abs().mean()
        loss = l1 + cfg.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.log_every == 0 or step == cfg.steps:
            rate = step * x.shape[0] * x.shape[2] / (time.time() - start)
            bar.write(f"step {step} l1 {l1.item():.4f} kl {kl.item():.3f} frames/s {rate:.1f}")
    # Scale the latents to unit variance (and zero mean) over the held-out videos.
    ae = FrozenAutoencoder(vae.eval(), 0.0, 1.0, 64)
    stats, _, _ = held_out_stats(ae, eval_samples, cfg.resolution, device)
    shift, scale = stats.pop("latent_mean"), 1.0 / max(stats.pop("latent_std"), 1e-6)
    metrics = {**stats, "steps": cfg.steps}
    save_video_vae(vae.cpu(), Path(cfg.output_dir), shift, scale, metrics)
    print(f"held-out metrics: {json.dumps(metrics)}", flush=True)
    print(f"saved {cfg.output_dir}; use vae.kind=ours vae.path={cfg.output_dir}", flush=True)
    print(
        f"its velocity error: python -m eval.vae data={cfg.eval_data or cfg.data} "
        f"output_dir={cfg.output_dir}/eval resolution={cfg.resolution} "
        f"eval_videos={len(eval_samples)} vae.kind=ours vae.path={cfg.output_dir}",
        flush=True,
    )
    return metrics


def main(argv: list[str]) -> None:
    """`python -m training.vae CONFIG.yaml [key=value ...]`."""
    cfg = load_config(VAETrainConfig, argv)
    eval_samples = held_out(cfg.eval_data or cfg.data, cfg.eval_videos)
    skip = 0 if cfg.eval_data else len(eval_samples)

    def endless() -> Iterator[torch.Tensor]:
        while True:  # epochs over the dataset, the held-out head skipped
            seen = 0
            for video in itertools.islice(iter_videos(cfg.data, cfg.resolution), skip, None):
                seen += 1
                yield video
            if not seen:
                raise AutoencoderError(
                    f"{cfg.data} has no videos left after holding out {skip}; lower eval_videos "
                    "or set eval_data"
                )

    train_vae(cfg, endless(), eval_samples)


if __name__ == "__main__":
    import inspect

    from phyworld.cli import run_cli

    usage = "usage: python -m training.vae CONFIG.yaml [key=value ...]  (configs/vae/)\n\n"
    sys.exit(run_cli("training.vae", main, usage + inspect.getdoc(VAETrainConfig), VAETrainConfig))
