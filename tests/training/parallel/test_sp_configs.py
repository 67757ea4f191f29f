"""The sequence-parallel training configs load and describe a layout that can run.

Each `configs/train/*_sp*.yaml` is checked for 64 GPUs (8 nodes x 8, the paper's combinatorial
setup): SP divides the heads, the token count and the GPUs per node (one SP group per node), ZeRO
is not stage 3, and the global batch is the paper's 256.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from phyworld.config import load_config
from training.config import TrainConfig
from training.engine import run_shape
from training.model import build_dit
from training.parallel.layout import check_token_count

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "configs" / "train").glob("*_sp*.yaml"))
GPUS, GPUS_PER_NODE, PAPER_BATCH = 64, 8, 256
LATENT_DOWNSAMPLE = 8  # SD's VAE and ours at 256x256


def test_there_are_sp_configs_for_dit_l_and_xl() -> None:
    sizes = {load(path).model.size for path in CONFIGS}
    assert {"L", "XL"} <= sizes, f"expected DiT-L and DiT-XL SP configs, found {sizes}"


def load(path: Path) -> TrainConfig:
    return load_config(TrainConfig, [str(path), "data.path=/data", "vae.path=/vae"])


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_sp_config_is_runnable_on_64_gpus(path: Path) -> None:
    """The engine's own checks, as a launch on 64 GPUs runs them: `run_shape` (SP divides the
    world and the heads, no ZeRO-3 with SP, the global batch adds up) and the token rule
    `apply_sequence_parallel` enforces, on the DiT's own latent grid."""
    cfg = load(path)
    sp = cfg.parallel.sequence_parallel_size
    assert sp > 1 and GPUS_PER_NODE % sp == 0, "an SP group should fit on one node"
    shape = run_shape(cfg, GPUS)
    assert shape.global_batch_size == PAPER_BATCH and shape.dp_size == GPUS // sp
    assert cfg.data.resolution == 256
    latent = cfg.data.resolution // LATENT_DOWNSAMPLE
    with torch.device("meta"):  # the grid needs the patch sizes, not the weights
        model = build_dit(cfg.model, 4)
    grid = model.grid(torch.Size([1, 4, cfg.data.frames, latent, latent]))
    check_token_count(math.prod(grid), sp, grid)
