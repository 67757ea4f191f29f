"""Encode a datagen dataset to latents once, so training need not run the VAE encoder every step.

    python -m training.encode CONFIG.yaml data=ROOT output=LATENT_ROOT [vae.kind=ours vae.path=DIR]

The output is a dataset in datagen's layout (parts/, index.json, manifest.json written last; local
or s3://) whose samples hold `latents`, a (c, T, h, w) float16 (or float32) array already scaled
by the autoencoder, plus every other column of the input except `frames` passed through. Train on
it with `data.kind=latents data.path=LATENT_ROOT` and the same `vae` section (the trainer still
decodes latents for its logged videos).

Large datasets: run `num_parts` workers (a Slurm array; `part` defaults to SLURM_ARRAY_TASK_ID).
Worker k encodes samples k, k + n, k + 2n, ... into parts/part_k; the worker that finds every
part done merges the index. A worker whose part is already done skips it, so a preempted array
is simply resubmitted.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import OmegaConf

from phyworld import storage
from phyworld.config import load_config, to_yaml
from phyworld.data import shards
from phyworld.data.schema import COLUMNS
from training.autoencoders import build_autoencoder
from training.config import VAEConfig
from training.data import decode_frames, video_tensor


@dataclass
class EncodeConfig:
    """Which dataset to encode, with which autoencoder, into where."""

    data: str = "???"  # datagen dataset (local directory or s3://bucket/prefix)
    output: str = "???"  # the latent dataset to write (local directory or s3://bucket/prefix)
    vae: VAEConfig = field(default_factory=VAEConfig)
    frames: int = 32  # first `frames` frames of each video
    resolution: int = 128  # videos are area-resized to this if stored larger
    dtype: str = "float16"  # float16 | float32: the stored latents
    batch_size: int = 16  # videos encoded at once
    device: str = "auto"  # auto | cpu | cuda
    num_parts: int = 1  # encode workers (a job array)
    part: int = -1  # this worker; -1: SLURM_ARRAY_TASK_ID, else 0
    size_limit: int = 1 << 27  # bytes per MDS shard


def latent_columns(dtype: str) -> dict[str, str]:
    """The output columns: the input's minus `frames`, plus `latents`."""
    if dtype not in ("float16", "float32"):
        raise ValueError(f"encode dtype must be float16 or float32, got {dtype!r}")
    columns = {k: v for k, v in COLUMNS.items() if k != "frames"}
    columns["latents"] = f"ndarray:{dtype}"
    return columns


def dataset_yaml(cfg: EncodeConfig) -> str:
    """The config saved with the latents and named by each part's DONE: the same for every
    worker (`part` left out), so the last worker merges the others' parts."""
    return to_yaml(OmegaConf.merge(cfg, {"part": -1}))


def worker_part(cfg: EncodeConfig) -> int:
    part = cfg.part if cfg.part >= 0 else int(os.environ.get("SLURM_ARRAY_TASK_ID", 0))
    if not 0 <= part < cfg.num_parts:
        raise ValueError(f"encode part {part} is outside 0..{cfg.num_parts - 1} (num_parts)")
    return part


def encode_part(cfg: EncodeConfig, part: int, device: torch.device) -> int:
    """Encode this worker's samples into parts/part_K; returns how many."""
    from tqdm import tqdm

    autoencoder = build_autoencoder(cfg.vae).to(device)
    columns = latent_columns(cfg.dtype)
    writer = shards.PartWriter(
        cfg.output, part, part, cfg.size_limit, dataset_yaml(cfg), columns=columns
    )
    pending: list[tuple[dict[str, Any], torch.Tensor]] = []

    def flush() -> None:
        videos = torch.stack([v for _, v in pending]).to(device)  # (B, 3, T, H, W)
        latents = autoencoder.encode(videos).cpu().numpy().astype(cfg.dtype)  # (B, c, T, h, w)
        for (sample, _), z in zip(pending, latents):
            writer.write({**{k: sample[k] for k in columns if k != "latents"}, "latents": z})
        pending.clear()

    try:
        samples = shards.iter_samples(cfg.data)
        for i, sample in enumerate(tqdm(samples, desc=f"encode part {part}", mininterval=10)):
            if i % cfg.num_parts != part:
                continue
            video = video_tensor(decode_frames(sample["frames"]), cfg.frames, cfg.resolution)
            pending.append((sample, video))
            if len(pending) == cfg.batch_size:
                flush()
        if pending:
            flush()
        writer.publish()
    except BaseException:
        writer.abort()
        raise
    return writer.count


def main(argv: list[str]) -> None:
    """`python -m training.encode CONFIG.yaml [key=value ...]`."""
    cfg = load_config(EncodeConfig, argv)
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    part = worker_part(cfg)
    shards.verify_manifest(cfg.data)
    config_yaml = dataset_yaml(cfg)
    storage.write_text(storage.join(cfg.output, shards.CONFIG), config_yaml)
    start = time.time()
    if shards.part_done(cfg.output, part, config_yaml):
        print(f"part {part} of {cfg.output} is already done; skipping", flush=True)
    else:
        shards.clean_stale_temps(cfg.output, range(part, part + 1))
        n = encode_part(cfg, part, device)
        rate = n / max(time.time() - start, 1e-9)
        print(f"encoded {n} videos into part {part} ({rate:.1f} videos/s)", flush=True)
    if all(shards.part_done(cfg.output, k, config_yaml) for k in range(cfg.num_parts)):
        manifest = shards.merge(cfg.output, cfg.num_parts, config_yaml)
        print(
            f"{cfg.output}: {manifest['count']} latent samples; train with "
            f"data.kind=latents data.path={cfg.output}",
            flush=True,
        )


if __name__ == "__main__":
    from phyworld.cli import run_cli

    sys.exit(run_cli("training.encode", main, __doc__, EncodeConfig))
