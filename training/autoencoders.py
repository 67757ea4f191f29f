"""The frozen autoencoders between pixels and latents (our VAE's trainer is `training/vae.py`).

Every kind maps videos (B, 3, T, H, W) in [-1, 1] to latents (B, c, T, H/f, W/f) and back; time is
never compressed, so condition frame k is latent frame k. `build_autoencoder(cfg)` returns one of

- `pixel`: pixel-unshuffle by f (c = 3 f^2), no weights, exact: tiny CPU runs and tests;
- `ours`: our small (2+1)D video VAE, trained by `python -m training.vae CONFIG`;
- `diffusers`: a pretrained 2D `AutoencoderKL` from a local folder, applied frame by frame.

Latents are `(z - shift) * scale`, with the autoencoder's own scale (ours: 1 / std of the training
latents, saved with the weights; diffusers: its config) unless `vae.scaling_factor` is set.

Our VAE (`VideoVAE`): per-frame 2D convolutions (ResNet blocks, stride-2 downsampling) with a temporal
convolution (kernel 3 over frames, residual, zero-initialised) after each stage, in the encoder and
the decoder, a diagonal Gaussian posterior, loss L1 + kl_weight * KL. Saved as
`DIR/weights.pt` (state dict, loads with weights_only=True) and `DIR/vae.json` (architecture,
scale and shift, held-out metrics), written atomically, `vae.json` last.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from phyworld.cli import UserError
from phyworld.storage import write_bytes
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


def read_vae_json(path: str | Path) -> dict[str, Any]:
    """The vae.json (architecture, shift, scale, metrics) of a VAE trained into `path`."""
    root = Path(path)
    if not (root / VAE_JSON).is_file() or not (root / VAE_WEIGHTS).is_file():
        raise AutoencoderError(
            f"vae.path={str(path)!r} holds no trained VAE ({VAE_JSON} and {VAE_WEIGHTS}); train "
            "one with `python -m training.vae configs/vae/<config>.yaml` and point vae.path at "
            "its output_dir, or use vae.kind=pixel"
        )
    return json.loads((root / VAE_JSON).read_text())


def load_video_vae(path: str | Path) -> tuple[VideoVAE, dict[str, Any]]:
    """Our VAE and its vae.json from a directory written by `python -m training.vae`."""
    meta = read_vae_json(path)
    vae = VideoVAE(VideoVAEConfig(**meta["architecture"]))
    state = torch.load(Path(path) / VAE_WEIGHTS, map_location="cpu", weights_only=True)
    vae.load_state_dict(state)
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
        self.downsample = diffusers_downsample(vae.config)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        frames = fold_time(video).to(self.vae.dtype)
        return unfold_time(self.vae.encode(frames).latent_dist.mode(), video.shape[2])

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        frames = fold_time(latents).to(self.vae.dtype)
        return unfold_time(self.vae.decode(frames).sample, latents.shape[2])


def diffusers_downsample(config: Mapping[str, Any]) -> int:
    """An AutoencoderKL's spatial factor, from its config: 2x per down block after the first."""
    return 2 ** (len(config["block_out_channels"]) - 1)


def diffusers_folder(path: str) -> Path:
    """The AutoencoderKL folder (config.json + weights) of a local VAE or pipeline folder."""
    root = Path(path)
    if not root.is_dir():
        raise AutoencoderError(
            f"vae.path={path!r} is not a directory; point it at a local AutoencoderKL folder "
            "(config.json + weights) or a diffusers pipeline folder with a vae/ subfolder"
        )
    folder = root / "vae" if (root / "vae" / "config.json").is_file() else root
    if not (folder / "config.json").is_file():
        raise AutoencoderError(f"vae.path={path!r} has no config.json (nor vae/config.json)")
    return folder


def load_diffusers_vae(path: str) -> nn.Module:
    """AutoencoderKL from a local folder: the VAE's own, or a pipeline folder with `vae/`."""
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(diffusers_folder(path))


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


def latent_downsample(cfg: VAEConfig) -> int:
    """The spatial factor f of the autoencoder `cfg` names (latents are H/f x W/f), as
    `build_autoencoder(cfg).downsample` is, read without loading any weights: pixel: its
    `downsample`; ours: the architecture in its vae.json; diffusers: its config.json."""
    if cfg.kind == "pixel":
        return cfg.downsample
    if cfg.kind == "ours":
        return VideoVAEConfig(**read_vae_json(cfg.path)["architecture"]).downsample
    if cfg.kind == "diffusers":
        return diffusers_downsample(
            json.loads((diffusers_folder(cfg.path) / "config.json").read_text())
        )
    raise AutoencoderError(f"vae.kind={cfg.kind!r}: use pixel, ours or diffusers")


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
