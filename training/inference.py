"""Load a trained checkpoint and continue videos from their first frames (what eval calls).

    gen = load_generator("runs/uniform_S/checkpoints/step_00100000")   # or the run directory
    out = gen.generate(frames, cond_frames=3, steps=10, seed=0)          # uint8 (B, T, H, W, 3)

Needs no DeepSpeed and no process group: `weights.pt` holds consolidated fp32 model and EMA
weights, `config.yaml` the model, autoencoder and data settings of the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from phyworld.config import from_yaml
from phyworld.data.pixels import to_uint8, to_unit
from training import diffusion
from training.autoencoders import build_autoencoder
from training.checkpoint import READ_BY_INFERENCE, WEIGHTS, checkpoint_dir, latest
from training.checkpoint_files import (
    COMPLETE,
    CheckpointError,
    raise_if_corrupt,
    torch_load,
    verify,
)
from training.config import TrainConfig
from training.model import DiT, build_dit


@dataclass
class Generator:
    """A trained DiT with its frozen autoencoder; `generate` continues videos."""

    model: DiT
    autoencoder: torch.nn.Module
    config: TrainConfig
    device: torch.device
    checkpoint: Path

    @property
    def resolution(self) -> int:
        """Frames are generated at the training resolution (inputs are resized to it)."""
        return self.config.data.resolution

    @torch.no_grad()
    def generate(
        self,
        frames_uint8: np.ndarray | torch.Tensor,
        cond_frames: int | None = None,
        steps: int | None = None,
        seed: int = 0,
        frames: int | None = None,
    ) -> np.ndarray:
        """Continue videos (B, T, H, W, 3) uint8 from their first `cond_frames` frames.

        Returns (B, frames or T, R, R, 3) uint8 at the training resolution R; the first
        `cond_frames` frames are the given ones (resized), the rest generated. Defaults come from
        the run's config (diffusion.cond_frames, diffusion.sample_steps). Same seed, same output.
        """
        cfg = self.config.diffusion
        cond_frames = cfg.cond_frames if cond_frames is None else cond_frames
        steps = cfg.sample_steps if steps is None else steps
        video = self._to_model_video(frames_uint8)  # (B, 3, T, R, R) in [-1, 1]
        x0_cond = self.autoencoder.encode(video[:, :, :cond_frames])
        generator = torch.Generator(device=self.device).manual_seed(seed)
        with torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"
        ):
            latents = diffusion.sample(
                self.model,
                x0_cond,
                cond_frames,
                steps,
                generator,
                frames=frames or video.shape[2],
                prediction=cfg.prediction,
            )
        out = self.autoencoder.decode(latents.float()).clamp(-1, 1)
        out[:, :, :cond_frames] = video[:, :, :cond_frames]  # the given frames, exactly
        return to_uint8(out).permute(0, 2, 3, 4, 1).cpu().numpy()

    def _to_model_video(self, frames_uint8: np.ndarray | torch.Tensor) -> torch.Tensor:
        frames = torch.as_tensor(np.asarray(frames_uint8))
        if frames.dtype != torch.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
            raise ValueError(
                f"expected uint8 frames of shape (B, T, H, W, 3), got {tuple(frames.shape)} {frames.dtype}"
            )
        video = to_unit(frames.to(self.device).permute(0, 4, 1, 2, 3))  # (B, 3, T, H, W)
        if video.shape[-2:] != (self.resolution, self.resolution):
            B, C, T, H, W = video.shape
            flat = video.transpose(1, 2).reshape(B * T, C, H, W)
            flat = F.interpolate(flat, size=(self.resolution, self.resolution), mode="area")
            video = flat.reshape(B, T, C, self.resolution, self.resolution).transpose(1, 2)
        return video


def resolve_checkpoint(path: str | Path) -> Path:
    """A step directory, or a run directory (its newest complete checkpoint). Cheap: the files
    are verified by `load_generator`, which reads them."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"{path} does not exist; pass a run directory or RUN/checkpoints/step_XXXXXXXX"
        )
    if (path / COMPLETE).exists():
        return checkpoint_dir(path)
    if (path / "checkpoints").is_dir() or (path / "config.yaml").is_file():  # a training run
        found = latest(path)
        if found is None:
            raise CheckpointError(
                f"run {path} has no checkpoint yet (nothing complete in {path / 'checkpoints'}): "
                "training writes one every checkpoint.every_steps steps; evaluate once one "
                "exists, or follow the run with watch=true"
            )
        return found
    raise CheckpointError(
        f"{path} is neither a checkpoint (no COMPLETE marker: still being written?) nor a training "
        "run directory; pass RUN or RUN/checkpoints/step_XXXXXXXX"
    )


def load_generator(
    ckpt_dir: str | Path, ema: bool = True, device: str | torch.device = "cpu"
) -> Generator:
    """The model (EMA weights unless `ema=False`), autoencoder and config of a checkpoint.

    The files read are checked against the checkpoint's manifest first: a corrupt checkpoint
    raises a `CheckpointError` naming the file."""
    path = resolve_checkpoint(ckpt_dir)
    raise_if_corrupt(path, verify(path, READ_BY_INFERENCE))
    device = torch.device(device)
    cfg = from_yaml(TrainConfig, (path / "config.yaml").read_text())
    autoencoder = build_autoencoder(cfg.vae).to(device)
    model = build_dit(cfg.model, autoencoder.latent_channels)
    model.load_state_dict(torch_load(path / WEIGHTS)["ema" if ema else "model"])
    model.to(device).eval().requires_grad_(False)
    return Generator(
        model=model, autoencoder=autoencoder, config=cfg, device=device, checkpoint=path
    )
