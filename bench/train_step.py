"""Time one whole DiT training step (forward, backward, optimizer) per model size.

    python bench/train_step.py [--sizes tiny,S] [--resolution 64] [--frames 8] [--downsample 8]

Prints, per size: seconds per step, tokens per second and the ratio of step time to the first
size's (the baseline measured in this run), plus model FLOPs per step (training.metrics' count,
the one the training logs use: 6 x parameters x tokens + 12 x depth x tokens^2 x hidden per
sample). On CUDA the step runs in bf16 autocast with torch's fused AdamW (what training uses on a
GPU), and MFU is printed against `--peak-tflops` (989, the H100/H200 dense bf16 peak); on the CPU
in fp32. Then, on the first size, two ratios: fused `scaled_dot_product_attention` against
explicit softmax attention, and activation checkpointing against none (`--no-comparisons` skips
them); `--compile` compiles each block (`parallel.compile`).

The latent shape is what the VAE gives: `resolution / downsample` pixels a side,
`latent_channels` channels, every frame (time is never compressed). The paper's kinematics
setting is `--resolution 128 --frames 32 --downsample 8 --latent-channels 4` (2048 tokens), its
combinatorial one `--resolution 256` (8192 tokens).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training import diffusion
from training.config import ModelConfig
from training.metrics import train_flops_per_sample
from training.model import DIT_CONFIGS, DiT, build_dit, count_params


class MathAttention(torch.nn.Module):
    """The baseline: attention with the (N, N) score matrix materialised."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        scores = (q @ k.transpose(-2, -1)) / q.shape[-1] ** 0.5  # (B, heads, N, N)
        return F.softmax(scores.float(), dim=-1).to(v.dtype) @ v


def step_flops(model: DiT, size: str, tokens: int, batch: int) -> float:
    """Model FLOPs of one step (forward and backward; the optimizer's are negligible)."""
    s = DIT_CONFIGS[size]
    return batch * train_flops_per_sample(count_params(model), tokens, s.depth, s.hidden_size)


def time_steps(model: DiT, x0: torch.Tensor, cond_frames: int, steps: int, warmup: int) -> float:
    """Median seconds per whole training step: flow loss, backward, AdamW step."""
    cuda = x0.is_cuda
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    times = []
    for i in range(warmup + steps):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = diffusion.loss(model, x0, cond_frames)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def build(size: str, args: argparse.Namespace, device: torch.device, **kw) -> DiT:
    cfg = ModelConfig(size=size, patch_t=args.patch_t, patch_hw=args.patch_hw, **kw)
    model = build_dit(cfg, args.latent_channels).to(device).train()
    if args.compile:
        model.compile_blocks()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="tiny,S")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--downsample", type=int, default=8)
    parser.add_argument("--latent-channels", type=int, default=4)
    parser.add_argument("--patch-t", type=int, default=1)
    parser.add_argument("--patch-hw", type=int, default=2)
    parser.add_argument("--cond-frames", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--compile", action="store_true", help="torch.compile each block")
    parser.add_argument("--no-comparisons", action="store_true", help="skip SDPA/ckpt ratios")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    side = args.resolution // args.downsample
    x0 = torch.randn(args.batch, args.latent_channels, args.frames, side, side, device=device)
    tokens = (args.frames // args.patch_t) * (side // args.patch_hw) ** 2
    precision = "bf16 autocast, fused AdamW" if device.type == "cuda" else "fp32, AdamW"
    name = (
        torch.cuda.get_device_name() if device.type == "cuda" else f"CPU x{torch.get_num_threads()}"
    )
    print(
        f"device {name}, {precision}{', compiled blocks' if args.compile else ''}; batch "
        f"{args.batch} x {tokens} tokens ({args.frames} frames of {side}x{side} latents, patch "
        f"{args.patch_t}x{args.patch_hw}); whole step: forward, backward, optimizer"
    )

    sizes = args.sizes.split(",")
    baseline = None
    for size in sizes:
        if size not in DIT_CONFIGS:
            raise SystemExit(f"unknown size {size!r}; choose from {list(DIT_CONFIGS)}")
        torch.manual_seed(0)
        model = build(size, args, device)
        seconds = time_steps(model, x0, args.cond_frames, args.steps, args.warmup)
        baseline = baseline or seconds
        flops = step_flops(model, size, tokens, args.batch)
        line = (
            f"DiT-{size:<4} {count_params(model) / 1e6:8.2f}M params  {seconds * 1e3:9.1f} ms/step  "
            f"{args.batch * tokens / seconds:10.0f} tokens/s  {flops / 1e9:9.1f} GFLOP/step  "
            f"x{seconds / baseline:.2f} vs DiT-{sizes[0]}"
        )
        if device.type == "cuda":
            line += f"  MFU {flops / seconds / (args.peak_tflops * 1e12):.1%}"
            line += f"  peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
            torch.cuda.reset_peak_memory_stats()
        print(line, flush=True)
        del model
    if args.no_comparisons:
        return

    size = sizes[0]
    torch.manual_seed(0)
    model = build(size, args, device)
    fused = time_steps(model, x0, args.cond_frames, args.steps, args.warmup)
    for block in model.blocks:
        block.attn.attend = MathAttention()
    math = time_steps(model, x0, args.cond_frames, args.steps, args.warmup)
    print(
        f"DiT-{size}: scaled_dot_product_attention {fused * 1e3:.1f} ms vs explicit softmax "
        f"{math * 1e3:.1f} ms per step: x{math / fused:.2f} faster"
    )
    checkpointed = build(size, args, device, activation_checkpointing=True)
    ckpt = time_steps(checkpointed, x0, args.cond_frames, args.steps, args.warmup)
    print(
        f"DiT-{size}: activation checkpointing {ckpt * 1e3:.1f} ms vs {fused * 1e3:.1f} ms per "
        f"step: x{ckpt / fused:.2f} the time (recomputes each block's forward)"
    )


if __name__ == "__main__":
    main()
