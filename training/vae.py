"""The frozen autoencoders between pixels and latents, and training our own small video VAE.

Every kind maps videos (B, 3, T, H, W) in [-1, 1] to latents (B, c, T, H/f, W/f) and back; time is
never compressed, so condition frame k is latent frame k. `build_autoencoder(cfg)` returns one of

- `pixel`: pixel-unshuffle by f (c = 3 f^2), no weights, exact: tiny CPU runs and tests;
- `ours`: our small (2+1)D video VAE, trained by `python -m training.vae CONFIG` (below);
- `diffusers`: a pretrained 2D `AutoencoderKL` from a local folder, applied frame by frame.

Latents are `(z - shift) * scale`, with the autoencoder's own scale (ours: 1 / std of the training
latents, saved with the weights; diffusers: its config) unless `vae.scaling_factor` is set.

Our VAE: per-frame 2D convolutions (ResNet blocks, stride-2 downsampling) with a temporal
convolution (kernel 3 over frames, residual, zero-initialised) after each stage, in the encoder and
the decoder, a diagonal Gaussian posterior, loss L1 + kl_weight * KL. Saved as
`DIR/weights.pt` (state dict, loads with weights_only=True) and `DIR/vae.json` (architecture,
scale and shift, held-out metrics), written atomically, `vae.json` last.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from phyworld.cli import UserError
from phyworld.config import choice, to_dict
from training.config import VAEConfig

VAE_JSON = "vae.json"
VAE_WEIGHTS = "weights.pt"


class AutoencoderError(UserError, ValueError):
    """An autoencoder that cannot be built or loaded; the message says what to do."""


def fold_time(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W), frames as a batch of images."""
    B, C, T, H, W = x.shape
    return x.transpose(1, 2).reshape(B * T, C, H, W)


def unfold_time(x: torch.Tensor, T: int) -> torch.Tensor:
    """(B*T, C, H, W) -> (B, C, T, H, W)."""
    BT, C, H, W = x.shape
    return x.view(BT // T, T, C, H, W).transpose(1, 2)


# ---------------------------------------------------------------------------------------------
#                                   Pixel "autoencoder"
# ---------------------------------------------------------------------------------------------


class PixelCodec(nn.Module):
    """Pixel-unshuffle: each f x f block of RGB becomes 3 f^2 channels. Lossless, no weights."""

    def __init__(self, downsample: int):
        super().__init__()
        self.downsample = downsample
        self.latent_channels = 3 * downsample**2

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        return unfold_time(F.pixel_unshuffle(fold_time(video), self.downsample), video.shape[2])

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return unfold_time(F.pixel_shuffle(fold_time(latents), self.downsample), latents.shape[2])


# ---------------------------------------------------------------------------------------------
#                                     Our video VAE
# ---------------------------------------------------------------------------------------------


@dataclass
class VideoVAEConfig:
    """Architecture of our video VAE (saved with its weights)."""

    channels: int = 64  # width of the first stage; deeper stages use up to 4x
    latent_channels: int = 4
    downsample: int = 4  # spatial factor, a power of 2; time is never compressed
    temporal: bool = True  # temporal convolutions after each stage: (2+1)D instead of 2D


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv twice, with a 1x1 skip when the width changes (per frame)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(min(32, cin // 4), cin),
            nn.SiLU(),
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.GroupNorm(min(32, cout // 4), cout),
            nn.SiLU(),
            nn.Conv2d(cout, cout, 3, padding=1),
        )
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)  # (N, cout, H, W)


class TemporalMix(nn.Module):
    """Residual conv over time at every pixel (kernel 3, replicate padding), zero-initialised.

    The encoder's mix is causal (frame k sees frames <= k): the DiT's condition latents are the
    first c latent frames of the encoded training video, and a symmetric kernel would leak frame
    c (the first frame to predict) into them, while at inference only the c given frames exist.
    The decoder's mix is symmetric: it always decodes whole videos.
    """

    def __init__(self, channels: int, causal: bool):
        super().__init__()
        self.padding = (2, 0) if causal else (1, 1)
        self.norm = nn.GroupNorm(min(32, channels // 4), channels)
        self.conv = nn.Conv1d(channels, channels, 3)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        BT, C, H, W = x.shape
        h = F.silu(self.norm(x)).view(BT // T, T, C, H, W).permute(0, 3, 4, 2, 1)  # (B, H, W, C, T)
        h = F.pad(h.reshape(-1, C, T), self.padding, mode="replicate")
        h = self.conv(h).view(BT // T, H, W, C, T).permute(0, 4, 3, 1, 2)  # (B, T, C, H, W)
        return x + h.reshape(BT, C, H, W)


def _stage_widths(cfg: VideoVAEConfig) -> list[int]:
    levels = int(math.log2(cfg.downsample))
    if 2**levels != cfg.downsample or levels < 1:
        raise AutoencoderError(f"VAE downsample must be a power of 2 >= 2, got {cfg.downsample}")
    return [cfg.channels * min(2**i, 4) for i in range(levels + 1)]


class VideoVAE(nn.Module):
    """Our (2+1)D VAE: video (B, 3, T, H, W) <-> latents (B, c, T, H/f, W/f)."""

    def __init__(self, cfg: VideoVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.latent_channels = cfg.latent_channels
        self.downsample = cfg.downsample
        widths = _stage_widths(cfg)
        self.enc_in = nn.Conv2d(3, widths[0], 3, padding=1)
        self.enc_stages = nn.ModuleList(
            ResBlock(widths[i], widths[i + 1]) for i in range(len(widths) - 1)
        )
        self.enc_down = nn.ModuleList(nn.Conv2d(w, w, 3, stride=2, padding=1) for w in widths[1:])
        self.enc_out = nn.Sequential(
            ResBlock(widths[-1], widths[-1]),
            nn.GroupNorm(min(32, widths[-1] // 4), widths[-1]),
            nn.SiLU(),
            nn.Conv2d(widths[-1], 2 * cfg.latent_channels, 3, padding=1),
        )
        self.dec_in = nn.Sequential(
            nn.Conv2d(cfg.latent_channels, widths[-1], 3, padding=1),
            ResBlock(widths[-1], widths[-1]),
        )
        rev = widths[::-1]
        self.dec_stages = nn.ModuleList(ResBlock(rev[i], rev[i + 1]) for i in range(len(rev) - 1))
        self.dec_up = nn.ModuleList(nn.Conv2d(w, w, 3, padding=1) for w in rev[:-1])
        self.dec_out = nn.Sequential(
            nn.GroupNorm(min(32, widths[0] // 4), widths[0]),
            nn.SiLU(),
            nn.Conv2d(widths[0], 3, 3, padding=1),
        )
        self.enc_mix = nn.ModuleList(
            TemporalMix(w, causal=True) for w in (widths[1:] if cfg.temporal else [])
        )
        self.dec_mix = nn.ModuleList(
            TemporalMix(w, causal=False) for w in (rev[1:] if cfg.temporal else [])
        )

    def posterior(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | video), each (B, c, T, h, w)."""
        T = video.shape[2]
        x = self.enc_in(fold_time(video))  # (B*T, w0, H, W)
        for i, (stage, down) in enumerate(zip(self.enc_stages, self.enc_down)):
            x = down(stage(x))  # (B*T, w_{i+1}, H / 2^(i+1), W / 2^(i+1))
            if self.cfg.temporal:
                x = self.enc_mix[i](x, T)
        mean, logvar = self.enc_out(x).chunk(2, dim=1)  # (B*T, c, h, w) each
        return unfold_time(mean, T), unfold_time(logvar.clamp(-30, 20), T)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """The posterior mean: deterministic latents."""
        return self.posterior(video)[0]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        T = latents.shape[2]
        x = self.dec_in(fold_time(latents))  # (B*T, w_last, h, w)
        for i, (up, stage) in enumerate(zip(self.dec_up, self.dec_stages)):
            x = stage(up(F.interpolate(x, scale_factor=2.0, mode="nearest")))
            if self.cfg.temporal:
                x = self.dec_mix[i](x, T)
        return unfold_time(self.dec_out(x), T)  # (B, 3, T, H, W)

    def forward(self, video: torch.Tensor, generator: torch.Generator | None = None):
        """Reconstruction from a posterior sample, and the KL per latent value (a scalar)."""
        mean, logvar = self.posterior(video)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device).to(mean)
        z = mean + (0.5 * logvar).exp() * eps
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        return self.decode(z), kl


def save_video_vae(vae: VideoVAE, out_dir: Path, shift: float, scale: float, metrics: dict) -> None:
    """Write weights.pt, then vae.json (architecture, shift, scale, metrics), each atomically."""
    from phyworld.storage import write_bytes

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{VAE_WEIGHTS}.tmp"
    torch.save({k: v.detach().cpu() for k, v in vae.state_dict().items()}, tmp)
    write_bytes(out_dir / VAE_WEIGHTS, tmp.read_bytes())
    tmp.unlink()
    meta = {
        "architecture": dataclasses.asdict(vae.cfg),
        "shift_factor": shift,
        "scaling_factor": scale,
        "metrics": metrics,
    }
    write_bytes(out_dir / VAE_JSON, json.dumps(meta, indent=1).encode())


def load_video_vae(path: str | Path) -> tuple[VideoVAE, dict[str, Any]]:
    """Our VAE and its vae.json from a directory written by `python -m training.vae`."""
    root = Path(path)
    if not (root / VAE_JSON).is_file() or not (root / VAE_WEIGHTS).is_file():
        raise AutoencoderError(
            f"vae.path={str(path)!r} holds no trained VAE ({VAE_JSON} and {VAE_WEIGHTS}); train "
            "one with `python -m training.vae configs/vae/<config>.yaml` and point vae.path at "
            "its output_dir, or use vae.kind=pixel"
        )
    meta = json.loads((root / VAE_JSON).read_text())
    vae = VideoVAE(VideoVAEConfig(**meta["architecture"]))
    vae.load_state_dict(torch.load(root / VAE_WEIGHTS, map_location="cpu", weights_only=True))
    return vae, meta


# ---------------------------------------------------------------------------------------------
#                                   Diffusers AutoencoderKL
# ---------------------------------------------------------------------------------------------


class DiffusersCodec(nn.Module):
    """A pretrained 2D AutoencoderKL applied frame by frame (posterior mean)."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae
        self.latent_channels = vae.config.latent_channels
        self.downsample = 2 ** (len(vae.config.block_out_channels) - 1)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        frames = fold_time(video).to(self.vae.dtype)
        return unfold_time(self.vae.encode(frames).latent_dist.mode(), video.shape[2])

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        frames = fold_time(latents).to(self.vae.dtype)
        return unfold_time(self.vae.decode(frames).sample, latents.shape[2])


def load_diffusers_vae(path: str) -> nn.Module:
    """AutoencoderKL from a local folder: the VAE's own, or a pipeline folder with `vae/`."""
    from diffusers import AutoencoderKL

    root = Path(path)
    if not root.is_dir():
        raise AutoencoderError(
            f"vae.path={path!r} is not a directory; point it at a local AutoencoderKL folder "
            "(config.json + weights) or a diffusers pipeline folder with a vae/ subfolder"
        )
    sub = "vae" if (root / "vae" / "config.json").is_file() else None
    if sub is None and not (root / "config.json").is_file():
        raise AutoencoderError(f"vae.path={path!r} has no config.json (nor vae/config.json)")
    return AutoencoderKL.from_pretrained(root, subfolder=sub)


# ---------------------------------------------------------------------------------------------
#                                 The frozen autoencoder
# ---------------------------------------------------------------------------------------------


class FrozenAutoencoder(nn.Module):
    """What training and eval use: scaled latents, no gradients, frames in chunks."""

    def __init__(self, codec: nn.Module, shift: float, scale: float, chunk_frames: int):
        super().__init__()
        self.codec = codec.eval().requires_grad_(False)
        self.shift = shift
        self.scale = scale
        self.chunk_frames = max(1, chunk_frames)
        self.latent_channels: int = codec.latent_channels
        self.downsample: int = codec.downsample

    def train(self, mode: bool = True) -> FrozenAutoencoder:
        return super().train(False)  # frozen: stays in eval mode whatever the caller does

    def _chunked(self, fn, x: torch.Tensor) -> torch.Tensor:
        """Apply fn to clips of whole samples so about `chunk_frames` frames run at once."""
        per = max(1, self.chunk_frames // x.shape[2])
        return torch.cat([fn(x[i : i + per]) for i in range(0, x.shape[0], per)])

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> (B, c, T, H/f, W/f)."""
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"expected videos (B, 3, T, H, W), got {tuple(video.shape)}")
        if video.shape[-1] % self.downsample or video.shape[-2] % self.downsample:
            raise ValueError(
                f"video size {tuple(video.shape[-2:])} is not divisible by the autoencoder's "
                f"downsampling factor {self.downsample}; change data.resolution"
            )
        z = self._chunked(self.codec.encode, video.float())
        return (z.float() - self.shift) * self.scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, c, T, h, w) -> (B, 3, T, h*f, w*f), clamped to [-1, 1]."""
        z = latents.float() / self.scale + self.shift
        return self._chunked(self.codec.decode, z).float().clamp(-1, 1)


def build_autoencoder(cfg: VAEConfig) -> FrozenAutoencoder:
    """The frozen autoencoder of `cfg.kind` (pixel | ours | diffusers), on the CPU."""
    if cfg.kind == "pixel":
        codec, shift, scale = PixelCodec(cfg.downsample), 0.0, 1.0
    elif cfg.kind == "ours":
        codec, meta = load_video_vae(cfg.path)
        shift, scale = meta["shift_factor"], meta["scaling_factor"]
    elif cfg.kind == "diffusers":
        codec = DiffusersCodec(load_diffusers_vae(cfg.path))
        shift = getattr(codec.vae.config, "shift_factor", None) or 0.0
        scale = codec.vae.config.scaling_factor
    else:
        raise AutoencoderError(f"vae.kind={cfg.kind!r}: use pixel, ours or diffusers")
    if cfg.scaling_factor > 0:
        scale = cfg.scaling_factor
    return FrozenAutoencoder(codec, float(shift), float(scale), cfg.chunk_frames)


# ---------------------------------------------------------------------------------------------
#                       Training our VAE: python -m training.vae CONFIG
# ---------------------------------------------------------------------------------------------


@dataclass
class VAETrainConfig:
    """Training our video VAE on a datagen dataset; weights land in `output_dir`.

    `mode=eval` instead measures an existing autoencoder (the `vae` section: ours, a pretrained
    diffusers one, or pixel) on the held-out videos and writes `output_dir/vae_eval.json`.
    """

    mode: str = choice("train", ("train", "eval"))
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
    score_from_frame: int = 3  # velocity error scored from this frame on (3: after the condition)
    log_every: int = 50
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    vae: VAEConfig = field(default_factory=VAEConfig)  # what mode=eval measures


def pick_device(name: str) -> torch.device:
    """`auto`: the GPU if there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def iter_videos(root: str, resolution: int) -> Iterator[torch.Tensor]:
    """Videos (3, T, H, W) in [-1, 1] of a datagen dataset, in order."""
    from datagen.shards import iter_samples
    from training.data import decode_frames, video_tensor

    for sample in iter_samples(root):
        frames = decode_frames(sample["frames"])
        yield video_tensor(frames, frames.shape[0], resolution)


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


def velocity_errors(samples: list[dict[str, Any]], videos: np.ndarray, first: int) -> dict | None:
    """Mean velocity error of the balls parsed from `videos` (B, T, H, W, 3) uint8 against the
    simulator's states of `samples`, per parser (eval's threshold and alpha); None for videos
    that are not kinematic (no per-frame states, or not red/blue balls)."""
    from eval.parse import parse_balls
    from eval.samples import EvalSetError, kinematic_truth
    from eval.velocity import velocity_errors as score

    try:
        truth = kinematic_truth(samples, "VAE held-out set")
    except EvalSetError:
        return None
    errors = {}
    for method in ("threshold", "alpha"):
        parsed = parse_balls(videos, truth.world_size, method, truth.colours)
        per_video = score(
            parsed,
            truth.position,
            truth.velocity,
            truth.radius,
            world_size=truth.world_size,
            frame_dt=truth.frame_dt,
            cond_frames=first,
            scenario=truth.scenario,
        )["vel_error"]
        errors[method] = float(np.nanmean(per_video)) if np.isfinite(per_video).any() else None
    return errors


@torch.no_grad()
def evaluate(
    ae: FrozenAutoencoder,
    samples: list[dict[str, Any]],
    resolution: int,
    device: torch.device,
    score_from_frame: int = 3,
) -> dict[str, Any]:
    """Held-out metrics of an autoencoder on datagen samples (the paper's VAE row).

    Reconstruction PSNR (dB, mean over videos) and latent statistics; for kinematic videos also
    the velocity error of the ground truth (the parser's floor) and of the reconstructions,
    scored from frame `score_from_frame` on, as eval scores generated videos.
    """
    from eval.parse import to_uint8
    from training.data import decode_frames, video_tensor

    scores, latents, truth, recons = [], [], [], []
    for sample in samples:
        frames = decode_frames(sample["frames"])
        x = video_tensor(frames, frames.shape[0], resolution)[None].to(device)  # (1, 3, T, H, W)
        z = ae.encode(x)
        recon = ae.decode(z)
        scores.append(psnr(recon, x).item())
        latents.append(z.flatten())
        truth.append(to_uint8(x[0].permute(1, 2, 3, 0).cpu().numpy()))  # (T, H, W, 3)
        recons.append(to_uint8(recon[0].permute(1, 2, 3, 0).cpu().numpy()))
    z = torch.cat(latents)
    metrics: dict[str, Any] = {
        "psnr_db": float(np.mean(scores)),
        "videos": len(samples),
        "latent_mean": z.mean().item(),
        "latent_std": z.std().item(),
    }
    gt = velocity_errors(samples, np.stack(truth), score_from_frame)
    if gt is not None:
        metrics["vel_error_gt"] = gt
        metrics["vel_error_recon"] = velocity_errors(samples, np.stack(recons), score_from_frame)
    return metrics


def train_vae(
    cfg: VAETrainConfig, videos: Iterator[torch.Tensor], eval_samples: list[dict[str, Any]]
) -> dict:
    """Train our VAE on clips of `videos` (3, T, H, W), save it to cfg.output_dir; returns the
    metrics on `eval_samples` (datagen samples, see `evaluate`)."""
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
    stats = evaluate(
        FrozenAutoencoder(vae.eval(), 0.0, 1.0, 64),
        eval_samples,
        cfg.resolution,
        device,
        cfg.score_from_frame,
    )
    shift, scale = stats.pop("latent_mean"), 1.0 / max(stats.pop("latent_std"), 1e-6)
    metrics = {**stats, "steps": cfg.steps}
    save_video_vae(vae.cpu(), Path(cfg.output_dir), shift, scale, metrics)
    print(f"held-out metrics: {json.dumps(metrics)}", flush=True)
    print(f"saved {cfg.output_dir}; use vae.kind=ours vae.path={cfg.output_dir}", flush=True)
    return metrics


def evaluate_existing(cfg: VAETrainConfig, eval_samples: list[dict[str, Any]]) -> dict:
    """mode=eval: the held-out metrics of `cfg.vae`, printed and saved to output_dir/vae_eval.json."""
    from phyworld.storage import write_bytes

    device = pick_device(cfg.device)
    ae = build_autoencoder(cfg.vae).to(device)
    metrics = evaluate(ae, eval_samples, cfg.resolution, device, cfg.score_from_frame)
    metrics["vae"] = to_dict(cfg.vae)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_bytes(out / "vae_eval.json", json.dumps(metrics, indent=1).encode())
    print(f"held-out metrics: {json.dumps(metrics)}", flush=True)
    return metrics


def main(argv: list[str]) -> None:
    """`python -m training.vae CONFIG.yaml [key=value ...]`."""
    import itertools

    from phyworld.config import load_config

    cfg = load_config(VAETrainConfig, argv)
    from datagen.shards import iter_samples

    held_out = cfg.eval_data or cfg.data
    eval_samples = list(itertools.islice(iter_samples(held_out), cfg.eval_videos))
    if not eval_samples:
        raise AutoencoderError(f"no held-out videos: {held_out} is empty")
    if cfg.mode == "eval":
        evaluate_existing(cfg, eval_samples)
        return
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
