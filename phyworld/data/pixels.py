"""Pixel conventions: frames are uint8 RGB in [0, 255]; models see floats in [-1, 1].

The one conversion each way, for numpy arrays and torch tensors alike (any layout).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Video = TypeVar("Video", np.ndarray, torch.Tensor)


def to_unit(video: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] -> float32 in [-1, 1], same shape and device."""
    return video.float().div_(127.5).sub_(1.0)


def to_uint8(video: Video) -> Video:
    """Floats in [-1, 1] -> uint8 in [0, 255], clamped and rounded half to even (numpy or torch)."""
    if isinstance(video, torch.Tensor):
        return (video.float().clamp(-1, 1).add(1.0).mul_(127.5)).round_().to(torch.uint8)
    return np.clip(np.rint((np.asarray(video, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)
