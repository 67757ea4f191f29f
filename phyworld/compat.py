"""The one place where we work around broken or CPU-hostile parts of the dependency stack.

torchvision: mosaicml-streaming imports torchvision. Where the only torchvision matching the
installed torch is a build whose compiled ops cannot load (a CUDA torchvision beside a CPU torch,
as on our CI machines), `import torchvision` fails with `operator torchvision::nms does not exist`.
We try to load torchvision's compiled ops ourselves; only if that fails do we declare the two op
schemas its Python code registers fake kernels for. streaming never calls these ops. With a
working torchvision (a cluster's CUDA stack) nothing is declared.

Warnings: megatron-core warns at import, four times per process, that Transformer Engine and Apex
are not installed. We use neither on purpose (its local fallbacks are what we call), so that
warning is silenced; every other warning stays.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch

_TORCHVISION_LIB: torch.library.Library | None = None  # kept alive: dropping it unregisters
_CHECKED = False


def ensure_torchvision_importable() -> None:
    """Make `import torchvision` (and so `import streaming`) work in this process."""
    global _TORCHVISION_LIB, _CHECKED
    if _CHECKED:
        return
    _CHECKED = True
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    compiled = sorted(Path(spec.submodule_search_locations[0]).glob("_C*.so"))
    try:
        if compiled:
            torch.ops.load_library(str(compiled[0]))
            return
    except (OSError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_LIB = lib


def silence_known_warnings() -> None:
    """Drop the dependency warnings that say nothing about this run (see the module docstring)."""
    warnings.filterwarnings(
        "ignore", message="Transformer Engine and Apex are not installed", category=UserWarning
    )
