"""Rectified flow: the training objective and a few-step Euler sampler.

A clean latent video x0 and Gaussian noise e are joined by the straight path
`x_t = (1 - t) x0 + t e`, t in [0, 1]; the model predicts its velocity `v = e - x0`. Sampling
integrates dx/dt = v from t = 1 (noise) to t = 0 in a few Euler steps (10 are enough for eval;
straight paths are what make few steps work, the reason we chose this over DDPM).

Frame conditioning: the first c frames are known. They enter the model twice: through the
condition channels (zero-padded to full length, with a mask channel) and as clean frames in x_t
itself, in training and in sampling alike, so the model never sees noisy versions of frames it was
given. The loss counts only the frames after the first c: on the condition frames the answer is
an input, so they would add a copy task that teaches nothing and makes the loss scale depend on
c / T. The sampler writes the given frames back unchanged.

What the network outputs (`prediction`): the velocity itself (`velocity`, SD3's choice), or the
clean video (`x0`, JiT's "x-prediction", Li & He 2025), from which the velocity follows as
`v = (x_t - x0_hat) / t`. The loss is the same velocity MSE either way. x0 lies on the data's
low-dimensional manifold (white background, a few discs) while v holds full-rank noise, so x0 is
the easier target for a model whose width is close to a token's size: there it makes sharp frames
where velocity prediction leaves grain (docs/quickstart.md). `t` is clipped at `MIN_T` in that
division, so the loss weight 1 / t^2 on the x0 error stays bounded.

Randomness in training: each sample's timestep and noise come from its own generator, seeded from
(run seed, step, the sample's index in the dataset) (`sample_generators`). What a sample is
given thus depends on nothing about the layout (which rank, micro-batch or position holds it), so
a run resumed on another number of GPUs draws exactly what the uninterrupted run drew, and the
ranks of a sequence-parallel group, holding the same samples, draw the same values.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from training.config import PREDICTIONS, TIMESTEP_SAMPLING

MIN_T = 0.05  # x0 prediction: t below this is treated as this in v = (x_t - x0_hat) / t


def condition(x0: torch.Tensor, cond_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's condition inputs for a video x0 (B, C, T, H, W) whose first c frames are given.

    Returns cond (B, C, T, H, W): the first c frames, zeros after; mask (B, 1, T, H, W): 1 on them.
    """
    B, _, T, H, W = x0.shape
    if not 0 <= cond_frames < T:
        raise ValueError(
            f"diffusion.cond_frames = {cond_frames} must be in [0, {T}) for videos of {T} frames"
        )
    mask = torch.zeros(B, 1, T, H, W, dtype=x0.dtype, device=x0.device)
    mask[:, :, :cond_frames] = 1
    return x0 * mask, mask


def sample_timesteps(
    batch: int,
    kind: str,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """(B,) flow times in (0, 1): logit-normal (SD3, favours the middle) or uniform."""
    if kind == "logit_normal":
        t = torch.sigmoid(torch.randn(batch, generator=generator, device=device))
    elif kind == "uniform":
        t = torch.rand(batch, generator=generator, device=device)
    else:
        raise ValueError(
            f"diffusion.timestep_sampling must be one of {TIMESTEP_SAMPLING}, got {kind!r}"
        )
    return t


def predicted_velocity(
    output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, prediction: str
) -> torch.Tensor:
    """The flow velocity (B, C, T, H, W) that the network's `output` stands for at (x_t, t (B,))."""
    if prediction == "velocity":
        return output
    if prediction == "x0":
        t_ = t.to(x_t.dtype).clamp(min=MIN_T).view(-1, 1, 1, 1, 1)
        return (x_t - output) / t_
    raise ValueError(f"diffusion.prediction must be one of {PREDICTIONS}, got {prediction!r}")


def sample_generators(
    seed: int, step: int, sample_ids: torch.Tensor, device: torch.device
) -> list[torch.Generator]:
    """One generator per sample of a micro-batch, seeded from (seed, step, its dataset index)."""
    generators = []
    for index in sample_ids.tolist():
        key = np.random.SeedSequence([seed, step, index]).generate_state(2, np.uint32)
        generators.append(
            torch.Generator(device=device).manual_seed(int(key[0]) << 32 | int(key[1]))
        )
    return generators


@dataclass
class FlowInputs:
    """One training example of the flow objective; all video tensors (B, C or 1, T, H, W)."""

    x_t: torch.Tensor  # noisy video, clean on the condition frames
    t: torch.Tensor  # (B,)
    cond: torch.Tensor
    mask: torch.Tensor  # 1 on condition frames
    target: torch.Tensor  # velocity e - x0


def flow_inputs(
    x0: torch.Tensor,
    cond_frames: int,
    timestep_sampling: str = "logit_normal",
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> FlowInputs:
    """Draw t and noise for clean latents x0 (B, C, T, H, W) and build the model's inputs.
    `generator`: one for the batch, or one per sample (`sample_generators`: t, then noise)."""
    if isinstance(generator, Sequence):
        if len(generator) != x0.shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {x0.shape[0]}")
        t = torch.cat([sample_timesteps(1, timestep_sampling, g, g.device) for g in generator])
        noise = torch.stack(
            [torch.randn(x0.shape[1:], generator=g, device=g.device) for g in generator]
        )
        t, noise = t.to(x0.device), noise.to(x0)
    else:
        gen_device = generator.device if generator is not None else x0.device
        t = sample_timesteps(x0.shape[0], timestep_sampling, generator, gen_device).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=gen_device).to(x0)
    cond, mask = condition(x0, cond_frames)
    t_ = t.to(x0.dtype).view(-1, 1, 1, 1, 1)
    x_t = (1 - t_) * x0 + t_ * noise
    x_t = torch.where(mask.bool(), x0, x_t)  # given frames stay clean
    return FlowInputs(x_t=x_t, t=t, cond=cond, mask=mask, target=noise - x0)


def loss_terms(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of squared errors over the predicted (non-condition) frames, and how many values it sums.

    Returned separately so that a sharded caller can divide by the count over the whole batch.
    """
    keep = 1 - mask  # (B, 1, T, H, W), broadcast over channels
    squared = (prediction.float() - target.float()).pow(2) * keep
    count = keep.sum() * prediction.shape[1]
    return squared.sum(), count


def loss(
    model: nn.Module,
    x0: torch.Tensor,
    cond_frames: int,
    timestep_sampling: str = "logit_normal",
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    prediction: str = "velocity",
) -> torch.Tensor:
    """Mean squared velocity error over the frames after the first `cond_frames` (a scalar)."""
    inputs = flow_inputs(x0, cond_frames, timestep_sampling, generator)
    output = model(inputs.x_t, inputs.t, inputs.cond, inputs.mask)
    velocity = predicted_velocity(output, inputs.x_t, inputs.t, prediction)
    total, count = loss_terms(velocity, inputs.target, inputs.mask)
    return total / count


@torch.no_grad()
def sample(
    model: nn.Module,
    x0_cond: torch.Tensor,
    cond_frames: int,
    steps: int = 10,
    generator: torch.Generator | None = None,
    frames: int | None = None,
    prediction: str = "velocity",
) -> torch.Tensor:
    """Generate latent videos that continue the first `cond_frames` frames of x0_cond.

    x0_cond: (B, C, T0, H, W) with T0 >= cond_frames; frames after the first c are ignored.
    frames: length of the output (default T0); prediction: what the model outputs (velocity | x0).
    Returns (B, C, frames, H, W) whose first c frames are exactly x0_cond's. Euler steps on a
    uniform grid of t from 1 to 0.
    """
    if steps < 1:
        raise ValueError(f"diffusion.sample_steps must be >= 1, got {steps}")
    B, C, T0, H, W = x0_cond.shape
    T = frames or T0
    if not 0 <= cond_frames <= min(T0, T - 1):
        raise ValueError(
            f"cannot condition on {cond_frames} frames: the input has {T0} and the output {T}"
        )
    gen_device = generator.device if generator is not None else x0_cond.device
    x = torch.randn((B, C, T, H, W), generator=generator, device=gen_device).to(x0_cond)
    given = torch.zeros_like(x)
    given[:, :, :cond_frames] = x0_cond[:, :, :cond_frames]
    cond, mask = condition(given, cond_frames)
    keep = mask.bool()
    x = torch.where(keep, given, x)
    ts = torch.linspace(1.0, 0.0, steps + 1, device=x.device)
    for t, t_next in itertools.pairwise(ts):
        t_batch = t.expand(B)
        v = predicted_velocity(model(x, t_batch, cond, mask), x, t_batch, prediction)
        x = torch.where(keep, given, x + (t_next - t).to(x.dtype) * v)
    return x
