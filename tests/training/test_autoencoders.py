"""The frozen autoencoders: pixel round trip, our VAE's save/load, diffusers AutoencoderKL."""

import json

import numpy as np
import pytest
import torch

from phyworld.data.pixels import to_uint8
from training.autoencoders import (
    AutoencoderError,
    VideoVAE,
    VideoVAEConfig,
    build_autoencoder,
    latent_downsample,
)
from training.config import VAEConfig
from training.vae import VAETrainConfig, psnr, train_vae


def moving_squares(n: int, T: int = 6, size: int = 16, seed: int = 0) -> list[torch.Tensor]:
    """Videos (3, T, H, W) in [-1, 1]: a coloured square moving right on white."""
    rng = np.random.default_rng(seed)
    videos = []
    for _ in range(n):
        v = np.ones((3, T, size, size), np.float32)
        x0, y0, w = rng.integers(0, 6), rng.integers(0, 10), rng.integers(3, 6)
        colour = rng.uniform(-1, 0.5, size=3).astype(np.float32)
        for t in range(T):
            v[:, t, y0 : y0 + w, x0 + t : x0 + t + w] = colour[:, None, None]
        videos.append(torch.from_numpy(v))
    return videos


def test_pixel_autoencoder_round_trips_exactly():
    ae = build_autoencoder(VAEConfig(kind="pixel", downsample=4))
    x = torch.rand(2, 3, 5, 16, 24) * 2 - 1
    z = ae.encode(x)
    assert z.shape == (2, 48, 5, 4, 6) and ae.latent_channels == 48
    assert torch.equal(ae.decode(z), x)
    # Time is never mixed: latent frame k depends only on frame k.
    x2 = x.clone()
    x2[:, :, 3] = 0
    assert torch.equal(ae.encode(x2)[:, :, :3], z[:, :, :3])
    with pytest.raises(ValueError, match="divisible"):
        ae.encode(torch.zeros(1, 3, 2, 18, 16))


def test_video_vae_keeps_time_and_downsamples_space():
    vae = VideoVAE(VideoVAEConfig(channels=8, latent_channels=4, downsample=4))
    x = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    mean, logvar = vae.posterior(x)
    assert mean.shape == logvar.shape == (2, 4, 3, 4, 4)
    assert vae.decode(mean).shape == x.shape
    with pytest.raises(AutoencoderError, match="power of 2"):
        VideoVAE(VideoVAEConfig(downsample=3))


def test_video_vae_encoder_is_causal_in_time():
    """Condition latents must not see the frames the DiT is asked to predict."""
    vae = VideoVAE(VideoVAEConfig(channels=8, latent_channels=4, downsample=4))
    for mix in (*vae.enc_mix, *vae.dec_mix):  # zero-initialised: give the time mixing weights
        torch.nn.init.normal_(mix.conv.weight, std=0.5)
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    changed = x.clone()
    changed[:, :, 3] = -x[:, :, 3]
    z, z_changed = vae.encode(x), vae.encode(changed)
    assert torch.equal(z[:, :, :3], z_changed[:, :, :3])
    assert not torch.allclose(z[:, :, 3:], z_changed[:, :, 3:])
    # The decoder mixes both ways (it decodes whole videos).
    assert not torch.allclose(vae.decode(z)[:, :, 2], vae.decode(z_changed)[:, :, 2])


def test_our_vae_trains_and_reloads_to_the_same_outputs(tmp_path):
    videos = moving_squares(24)
    cfg = VAETrainConfig(
        data="(in memory)",
        output_dir=str(tmp_path / "vae"),
        model=VideoVAEConfig(channels=8, latent_channels=4, downsample=2),
        resolution=16,
        clip_frames=3,
        batch_size=4,
        steps=10,
        lr=3e-3,
        shuffle_buffer=16,
        log_every=5,
    )
    untrained = psnr(videos[0][None].clamp(-1, 1), torch.zeros_like(videos[0])[None]).item()
    held_out = [{"frames": to_uint8(v.permute(1, 2, 3, 0).numpy())} for v in videos[:4]]
    metrics = train_vae(cfg, iter(videos[4:] * 10), held_out)
    saved = json.loads((tmp_path / "vae" / "vae.json").read_text())
    assert saved["metrics"]["psnr_db"] == pytest.approx(metrics["psnr_db"])
    assert metrics["psnr_db"] > untrained  # better than predicting grey

    ae = build_autoencoder(VAEConfig(kind="ours", path=str(tmp_path / "vae")))
    assert ae.latent_channels == 4 and ae.downsample == 2
    assert latent_downsample(VAEConfig(kind="ours", path=str(tmp_path / "vae"))) == 2  # no weights
    x = torch.stack(videos[:2])
    z = ae.encode(x)
    # The saved scale makes held-out latents roughly unit variance.
    assert 0.3 < z.std().item() < 3.0
    # Reloaded weights give the trained module's outputs.
    trained = VideoVAE(cfg.model)
    trained.load_state_dict(torch.load(tmp_path / "vae" / "weights.pt", weights_only=True))
    with torch.no_grad():
        raw = trained.encode(x)
    torch.testing.assert_close(z, (raw - saved["shift_factor"]) * saved["scaling_factor"])
    torch.testing.assert_close(ae.decode(z), trained.decode(raw).clamp(-1, 1), rtol=1e-4, atol=1e-5)
    ae.train()
    assert not ae.codec.training  # stays frozen


def test_missing_vae_weights_name_the_fix(tmp_path):
    with pytest.raises(AutoencoderError, match=r"python -m training\.vae"):
        build_autoencoder(VAEConfig(kind="ours", path=str(tmp_path)))
    with pytest.raises(AutoencoderError, match=r"vae\.kind"):
        build_autoencoder(VAEConfig(kind="sd"))
    with pytest.raises(AutoencoderError, match="not a directory"):
        build_autoencoder(VAEConfig(kind="diffusers", path=str(tmp_path / "nope")))


@pytest.mark.parametrize("layout", ["vae_folder", "pipeline_folder"])
def test_diffusers_autoencoder_kl_frame_by_frame(tmp_path, layout):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    kl = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
        scaling_factor=0.5,
    ).eval()
    where = tmp_path / "vae" if layout == "pipeline_folder" else tmp_path
    kl.save_pretrained(where)
    ae = build_autoencoder(VAEConfig(kind="diffusers", path=str(tmp_path), chunk_frames=4))
    assert ae.latent_channels == 4 and ae.downsample == 2 and ae.scale == 0.5
    assert latent_downsample(VAEConfig(kind="diffusers", path=str(tmp_path))) == 2  # config only

    x = torch.rand(3, 3, 2, 16, 16) * 2 - 1
    z = ae.encode(x)
    assert z.shape == (3, 4, 2, 8, 8)
    with torch.no_grad():
        frame = kl.encode(x[:, :, 1]).latent_dist.mode() * 0.5  # frame 1 of every video
        torch.testing.assert_close(z[:, :, 1], frame, rtol=1e-4, atol=1e-5)
        video = ae.decode(z)
        assert video.shape == x.shape
        torch.testing.assert_close(
            video[:, :, 0], kl.decode(z[:, :, 0] / 0.5).sample.clamp(-1, 1), rtol=1e-4, atol=1e-5
        )
    override = build_autoencoder(
        VAEConfig(kind="diffusers", path=str(tmp_path), scaling_factor=2.0)
    )
    torch.testing.assert_close(override.encode(x), z * 4.0, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_vae_cli_on_generated_uniform_motion(tmp_path):
    """`python -m training.vae` on a real datagen dataset trains and saves; `python -m eval.vae`
    then reports its row (ground truth and reconstruction velocity error)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    data = tmp_path / "uniform"
    gen = [str(repo / "configs/data/uniform_base.yaml"), f"output={data}", "sampling=random"]
    gen += ["count=10", "frames=8", "resolution=32", "workers=1", "progress=false"]
    subprocess.run([sys.executable, "-m", "datagen", *gen], check=True, cwd=repo)
    out = tmp_path / "vae"
    args = [str(repo / "configs/vae/tiny.yaml"), f"data={data}", f"output_dir={out}"]
    args += ["resolution=32", "steps=4", "eval_videos=4", "batch_size=2", "log_every=5"]
    subprocess.run([sys.executable, "-m", "training.vae", *args], check=True, cwd=repo)

    metrics = json.loads((out / "vae.json").read_text())["metrics"]
    assert metrics["videos"] == 4 and metrics["psnr_db"] > 5
    args = [f"data={data}", f"output_dir={out}/eval", "resolution=32", "eval_videos=4"]
    args += ["vae.kind=ours", f"vae.path={out}"]
    subprocess.run([sys.executable, "-m", "eval.vae", *args], check=True, cwd=repo)
    row = json.loads((out / "eval" / "vae_eval.json").read_text())
    assert row["psnr_db"] == pytest.approx(metrics["psnr_db"], rel=1e-4)
    # The ground truth parses to a small velocity error (the parser's floor at 32 px).
    assert 0 <= row["vel_error_gt"]["alpha"] < 0.3
    assert set(row["vel_error_recon"]) == {"threshold", "alpha"}
    ae = build_autoencoder(VAEConfig(kind="ours", path=str(out)))
    assert ae.encode(torch.zeros(1, 3, 2, 32, 32)).shape == (1, 4, 2, 16, 16)
