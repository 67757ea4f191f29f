"""The study's GPU-hours estimate counts the tokens that training counts for its MFU."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from phyworld.config import load_config
from pipeline.study import (
    DatasetSpec,
    GridSpec,
    Roots,
    StudyConfig,
    VAESpec,
    latent_factor,
    train_flops,
)
from training.autoencoders import VideoVAE, VideoVAEConfig, build_autoencoder, save_video_vae
from training.config import TrainConfig
from training.metrics import train_flops_per_sample
from training.model import DIT_CONFIGS, build_dit
from training.train import latent_shape

REPO = Path(__file__).resolve().parents[2]
KINEMATICS_DIT = str(REPO / "configs" / "studies" / "kinematics_dit.yaml")  # vae.kind=ours


def training_tokens(cfg: TrainConfig) -> int:
    """Tokens per sample as `training.train` counts them: the autoencoder's latents of a batch,
    cut into the DiT's patches."""
    autoencoder = build_autoencoder(cfg.vae)
    model = build_dit(cfg.model, autoencoder.latent_channels)
    res = cfg.data.resolution
    batch = {"video": torch.zeros(1, 3, cfg.data.frames, res, res, dtype=torch.uint8)}
    return math.prod(model.grid(latent_shape(batch, autoencoder, res)))


def run_config(vae_path: Path | str) -> TrainConfig:
    paths = ["data.path=unused", "output_dir=unused", f"vae.path={vae_path}"]
    small = ["model.size=S", "data.resolution=64", "data.frames=8"]
    return load_config(TrainConfig, [KINEMATICS_DIT, *paths, *small])


@pytest.mark.parametrize("vae", ["trained, at vae.path", "the grid's, trained by the study"])
def test_the_estimate_counts_the_tokens_training_counts(vae: str, tmp_path: Path) -> None:
    """The estimate took every non-pixel VAE to be 8x: a run on a 4x VAE was planned with a
    quarter of its tokens."""
    trained = tmp_path / "vae_4x"
    architecture = VideoVAEConfig(channels=8, latent_channels=4, downsample=4)
    save_video_vae(VideoVAE(architecture), trained, shift=0.0, scale=1.0, metrics={})
    size = DIT_CONFIGS["S"]
    expected = train_flops_per_sample(
        size.paper_params, training_tokens(run_config(trained)), size.depth, size.hidden_size
    )

    study = StudyConfig(
        name="s",
        data_root=str(tmp_path / "data"),
        run_root=str(tmp_path / "runs"),
        datasets={"a": DatasetSpec(config="configs/data/uniform_base.yaml")},
        # tiny.yaml's architecture, 4x: the one saved above
        vaes={
            "v": VAESpec(config="configs/vae/tiny.yaml", data="a", overrides=["model.downsample=4"])
        },
    )
    roots = Roots.of(study)
    if vae.startswith("trained"):
        grid, cfg = GridSpec(name="g", train_config=KINEMATICS_DIT), run_config(trained)
    else:  # not trained yet when the study is planned
        grid, cfg = (
            GridSpec(name="g", train_config=KINEMATICS_DIT, vae="v"),
            run_config(roots.vae_dir("v")),
        )
    assert train_flops(cfg, latent_factor(study, roots, grid, cfg)) == expected
