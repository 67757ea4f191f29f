"""The paper's "GT / VAE" row for any autoencoder: `python -m eval.vae [key=value ...]`.

Measures an autoencoder (`vae.kind`: ours, a pretrained diffusers one, or pixel) on held-out
datagen videos: the reconstruction PSNR and, for kinematic videos, the velocity error of the
ground truth (the parser's floor) and of the reconstructions, scored by the same parse-and-score
function as the ground-truth floors (`eval.floors.video_errors`: both parsers, both metrics),
from frame `score_from_frame` on. Prints the metrics and writes `output_dir/vae_eval.json`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eval.floors import video_errors
from eval.samples import EvalSetError
from phyworld.config import load_config, to_dict
from phyworld.data.pixels import to_uint8
from phyworld.storage import write_bytes
from training.autoencoders import FrozenAutoencoder, build_autoencoder
from training.config import VAEConfig
from training.vae import held_out, held_out_stats, pick_device


@dataclass
class VAEEvalConfig:
    """Measure an autoencoder on held-out videos; the metrics land in `output_dir/vae_eval.json`."""

    data: str = "???"  # held-out datagen dataset: local directory or s3://bucket/prefix
    output_dir: str = "???"
    resolution: int = 128
    eval_videos: int = 32  # the first this many videos of `data`
    score_from_frame: int = 3  # velocity error scored from this frame on (3: after the condition)
    device: str = "auto"  # auto | cpu | cuda
    vae: VAEConfig = field(default_factory=VAEConfig)  # the autoencoder to measure


def velocity_errors(
    samples: list[dict[str, Any]], videos: list[torch.Tensor], first: int
) -> dict[str, dict[str, float | None]] | None:
    """{"step" | "paper": {parser: mean error}} of the balls parsed from `videos` (each
    (3, T, H, W) in [-1, 1]) against the true states of `samples`; None for videos that are not
    kinematic (no per-frame states, or not red/blue balls)."""
    frames = to_uint8(torch.stack(videos).permute(0, 2, 3, 4, 1).numpy())  # (B, T, H, W, 3)
    try:
        per_video = video_errors(samples, first, frames, name="VAE held-out set")
    except EvalSetError:
        return None
    out: dict[str, dict[str, float | None]] = {"step": {}, "paper": {}}
    for (parser, metric), values in per_video.items():
        out[metric][parser] = float(np.nanmean(values)) if np.isfinite(values).any() else None
    return out


def measure(
    ae: FrozenAutoencoder,
    samples: list[dict[str, Any]],
    resolution: int,
    device: torch.device,
    score_from_frame: int = 3,
) -> dict[str, Any]:
    """Held-out metrics of an autoencoder on datagen samples: PSNR, latent statistics and, for
    kinematic videos, `vel_error_gt` / `vel_error_recon` (step metric, per parser) and
    `vel_error_paper_gt` / `vel_error_paper_recon` (the paper's metric)."""
    metrics, videos, recons = held_out_stats(ae, samples, resolution, device)
    gt = velocity_errors(samples, videos, score_from_frame)
    if gt is not None:
        recon = velocity_errors(samples, recons, score_from_frame)
        metrics.update(
            vel_error_gt=gt["step"],
            vel_error_recon=recon["step"],
            vel_error_paper_gt=gt["paper"],
            vel_error_paper_recon=recon["paper"],
        )
    return metrics


def main(argv: list[str]) -> None:
    """`python -m eval.vae [key=value ...]`."""
    cfg = load_config(VAEEvalConfig, argv)
    device = pick_device(cfg.device)
    samples = held_out(cfg.data, cfg.eval_videos)
    ae = build_autoencoder(cfg.vae).to(device)
    metrics = measure(ae, samples, cfg.resolution, device, cfg.score_from_frame)
    metrics["vae"] = to_dict(cfg.vae)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_bytes(out / "vae_eval.json", json.dumps(metrics, indent=1).encode())
    print(f"held-out metrics: {json.dumps(metrics)}", flush=True)


if __name__ == "__main__":
    import inspect

    from phyworld.cli import run_cli

    usage = "usage: python -m eval.vae data=DIR output_dir=DIR vae.kind=... [key=value ...]\n\n"
    sys.exit(run_cli("eval.vae", main, usage + inspect.getdoc(VAEEvalConfig), VAEEvalConfig))
