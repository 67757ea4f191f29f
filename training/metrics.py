"""What a run reports: step logs on stdout and TensorBoard scalars and videos (rank 0 writes).

Throughput is measured between two log lines, never over the first step of a process (it
includes the start-up: loader workers, first shard reads, kernel warm-up), so the first log line
has none; MFU is the model FLOPs of those steps over the devices' peak. FLOPs per training sample follow the usual transformer count: 6 x parameters x
tokens for the linear layers (forward + backward) plus 12 x depth x tokens^2 x hidden for
attention scores and values.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import torch
import torch.distributed as dist

from phyworld.data.pixels import to_uint8

# Dense bf16 peak TFLOP/s per device, by substring of the device name (first match wins).
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10": 125.0,
    "V100": 125.0,
}


SAMPLE_IDS = "sample_ids.jsonl"  # in RUN: one line per step with `logging.sample_ids=true`


def log_sample_ids(run_dir: str | Path, step: int, ids: list[int], replica: bool) -> None:
    """Append `{"step": S, "samples": [...]}` to RUN/sample_ids.jsonl: the dataset indices of the
    step's samples over all ranks, sorted (all ranks call; `replica`: this rank holds a copy of
    another's samples, as sequence-parallel ranks > 0 do). A relaunch that redoes a step appends
    it again: the last line of a step is the one that counts."""
    every: list[list[int]] | None = [[] for _ in range(dist.get_world_size())]
    dist.gather_object([] if replica else ids, every if dist.get_rank() == 0 else None, dst=0)
    if dist.get_rank() == 0:
        line = json.dumps({"step": step, "samples": sorted(i for part in every for i in part)})
        with open(Path(run_dir) / SAMPLE_IDS, "a") as f:
            f.write(line + "\n")


def peak_tflops(configured: float) -> float:
    """The per-device peak for MFU: the config's value, else guessed from the GPU name (0: unknown)."""
    if configured > 0:
        return configured
    if not torch.cuda.is_available():
        return 0.0
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), 0.0)


def train_flops_per_sample(params: int, tokens: int, depth: int, hidden: int) -> float:
    """Model FLOPs of one training sample (forward and backward)."""
    return 6.0 * params * tokens + 12.0 * depth * tokens**2 * hidden


def peak_memory_gib() -> float:
    """Peak GPU memory allocated on this device, or the process's peak RSS on CPU."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB


class Metrics:
    """Collects per-step numbers and logs them every `every` steps (only rank 0 writes)."""

    def __init__(
        self,
        run_dir: str | Path,
        rank: int,
        world_size: int,
        flops_per_sample: float,
        tokens_per_sample: int,
        peak_tflops_per_device: float,
    ) -> None:
        self.rank = rank
        self.world_size = world_size
        self.flops_per_sample = flops_per_sample
        self.tokens_per_sample = tokens_per_sample
        self.peak_flops = peak_tflops_per_device * 1e12 * world_size
        self.writer = None
        if rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(run_dir) / "tb"))
        self._t0: float | None = None  # starts at the end of the first step (after start-up)
        self._samples = 0

    def log_text(self, tag: str, text: str, step: int) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

    def step(
        self, step: int, loss: float, lr: float, grad_norm: float, samples: int, log: bool
    ) -> None:
        """Account for one optimizer step of `samples` samples (all ranks); log when `log`."""
        now = time.perf_counter()
        if self._t0 is None:  # the first step of this process: start-up, not throughput
            self._t0 = now
        else:
            self._samples += samples
        if not log:
            return
        scalars = {
            "train/loss": loss,
            "train/lr": lr,
            "train/grad_norm": grad_norm,
            "perf/peak_memory_gib": peak_memory_gib(),
        }
        throughput = ""
        if self._samples:
            samples_s = self._samples / max(now - self._t0, 1e-9)
            scalars["perf/samples_per_s"] = samples_s
            scalars["perf/tokens_per_s"] = samples_s * self.tokens_per_sample
            throughput = (
                f"{samples_s:.1f} samples/s | {samples_s * self.tokens_per_sample:.0f} tokens/s"
            )
            if self.peak_flops > 0:
                scalars["perf/mfu"] = samples_s * self.flops_per_sample / self.peak_flops
                throughput += f" mfu {scalars['perf/mfu']:.1%}"
            throughput += " | "
        if self.writer is not None:
            for tag, value in scalars.items():
                self.writer.add_scalar(tag, value, step)
            print(
                f"step {step:>7d} | loss {loss:.5f} | lr {lr:.2e} | grad norm {grad_norm:.3f} | "
                f"{throughput}peak mem {scalars['perf/peak_memory_gib']:.2f} GiB",
                flush=True,
            )
        self._t0, self._samples = time.perf_counter(), 0

    def video(self, step: int, truth: torch.Tensor, generated: torch.Tensor, fps: int = 10) -> None:
        """Ground truth | generated, side by side: both (B, 3, T, H, W) in [-1, 1]."""
        if self.writer is None:
            return
        pair = torch.cat([truth, generated], dim=-1)  # (B, 3, T, H, 2W)
        pair = to_uint8(pair)
        self.writer.add_video(
            "samples/truth_vs_generated", pair.permute(0, 2, 1, 3, 4).cpu(), step, fps=fps
        )
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
