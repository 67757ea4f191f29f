"""Run a function in N real processes over gloo, and a tiny dataset (tests/training/parallel/ only;
what other areas share too is in tests/harness.py)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from harness import free_port


def _entry(rank: int, world: int, port: int, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)  # 2 cores shared by every rank of every test
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        fn(rank, *args)
    finally:
        from training.parallel.groups import destroy_parallel

        destroy_parallel()
        dist.barrier()
        dist.destroy_process_group()


def run_ranks(world: int, fn: Callable[..., Any], *args: Any) -> None:
    """Call `fn(rank, *args)` in `world` spawned processes; an exception in any rank fails here."""
    mp.spawn(_entry, args=(world, free_port(), fn, args), nprocs=world, join=True)


# ---------------------------------------------------------------------------------------------
#                   Real training runs (python -m training under torchrun)
# ---------------------------------------------------------------------------------------------


def write_tiny_dataset(root: Path, count: int = 32, frames: int = 8, size: int = 32) -> Path:
    """An MDS dataset of coloured squares sliding right: `frames` as (T, H, W, 3) uint8."""
    from streaming import MDSWriter  # after `import phyworld` (top of this file)

    rng = np.random.default_rng(0)
    columns = {"id": "str", "scenario": "str", "frames": "ndarray:uint8"}
    with MDSWriter(out=str(root), columns=columns, size_limit=1 << 20) as writer:
        for i in range(count):
            video = np.full((frames, size, size, 3), 255, np.uint8)
            x, y, v = rng.integers(0, size // 2), rng.integers(0, size - 6), rng.integers(1, 3)
            colour = rng.integers(0, 200, 3)
            for t in range(frames):
                left = (x + v * t) % (size - 6)
                video[t, y : y + 6, left : left + 6] = colour
            writer.write({"id": f"tiny-{i:09d}", "scenario": "uniform", "frames": video})
    return root


# ---------------------------------------------------------------------------------------------
#            Collectives must get tensors on the model's device (NCCL rejects host tensors)
# ---------------------------------------------------------------------------------------------

# Factories that put their result on the host unless given `device=`.
_FACTORIES = {
    torch.tensor, torch.as_tensor, torch.zeros, torch.ones, torch.empty, torch.full,
    torch.arange, torch.linspace, torch.randn, torch.rand, torch.randint, torch.eye,
}  # fmt: skip
_COLLECTIVES = (
    "all_gather", "all_gather_into_tensor", "all_reduce", "all_to_all_single", "broadcast",
    "reduce_scatter_tensor",
)  # fmt: skip


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _tensors(item)]
    return []


def _device_names(args: tuple, kwargs: dict) -> list[str]:
    """Device names given as literal strings to `Tensor.to` (positionally or as `device=`)."""
    return [a for a in (*args, kwargs.get("device")) if isinstance(a, str)]


class HostTensorAudit(torch.overrides.TorchFunctionMode):
    """Which tensors live on the host rather than on the model's device, on a CPU-only machine.

    On CPU the model's device *is* the host, so `tensor.device` cannot tell them apart. This mode
    marks what a GPU run would hold in host memory: the results of `.cpu()`, of `.to("cpu")`
    (a literal device name, not one taken from a tensor), of factories called without `device=`,
    and everything computed from those (0-dim tensors excepted: torch takes CPU scalars beside
    CUDA tensors). `collectives()` patches torch.distributed (and megatron-core's aliases) to
    record every collective that is handed a marked tensor, as NCCL would reject it ("No backend
    type associated with device type cpu"); the collective still runs, so no rank hangs.
    """

    def __init__(self) -> None:
        super().__init__()
        self._host: dict[int, torch.Tensor] = {}  # strong refs: ids stay unique while audited
        self.violations: list[str] = []
        self.calls: dict[str, int] = {}

    def is_host(self, t: torch.Tensor) -> bool:
        return id(t) in self._host

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        to_host = (
            func is torch.Tensor.cpu
            or (func is torch.Tensor.to and "cpu" in _device_names(args[1:2], kwargs))
            or (func in _FACTORIES and kwargs.get("device") is None)
        )
        inputs = _tensors((args, kwargs))
        if to_host or any(self.is_host(t) for t in inputs if t.dim() > 0):
            for t in _tensors(out):
                self._host[id(t)] = t
        return out

    @contextlib.contextmanager
    def collectives(self) -> Iterator[HostTensorAudit]:
        """Audit every collective called inside the block (and this mode active)."""
        from megatron.core.tensor_parallel import mappings

        patched = [(dist, name) for name in _COLLECTIVES]
        patched += [(mappings, "dist_all_gather_func"), (mappings, "dist_reduce_scatter_func")]
        saved = [(module, name, getattr(module, name)) for module, name in patched]

        def audited(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                self.calls[name] = self.calls.get(name, 0) + 1
                for t in _tensors((args, kwargs)):
                    if self.is_host(t):
                        self.violations.append(
                            f"{name} got a host tensor of shape {tuple(t.shape)}"
                        )
                return fn(*args, **kwargs)

            return call

        for module, name, fn in saved:
            setattr(module, name, audited(name, fn))
        try:
            with self:
                yield self
        finally:
            for module, name, fn in saved:
                setattr(module, name, fn)
