"""The one place where megatron-core's CUDA assumptions meet a CPU-only process.

Several megatron-core mappings (`_gather_along_first_dim`, reduce-scatters, all-to-all-v) allocate
their output on `torch.cuda.current_device()`, which raises `Torch not compiled with CUDA enabled`
on a CPU build of torch and `No CUDA GPUs are available` on a machine without GPUs. Our CPU tests
and CPU runs (gloo) use those same mappings, so where CUDA is not available we make
`torch.cuda.current_device` name the CPU device. Where CUDA is available nothing is changed.
"""

from __future__ import annotations

import torch

_ORIGINAL_CURRENT_DEVICE = torch.cuda.current_device


def _cpu_current_device() -> torch.device:
    return torch.device("cpu")


def install_cpu_device_shim() -> bool:
    """Point `torch.cuda.current_device` at the CPU when CUDA is unavailable.

    Idempotent. Returns True when the shim is active (CPU process), False on a CUDA process.
    """
    if torch.cuda.is_available():
        return False
    torch.cuda.current_device = _cpu_current_device  # type: ignore[assignment]
    return True


def uninstall_cpu_device_shim() -> None:
    """Restore the original `torch.cuda.current_device` (for tests)."""
    torch.cuda.current_device = _ORIGINAL_CURRENT_DEVICE  # type: ignore[assignment]
