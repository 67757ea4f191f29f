"""The sequence-parallel training configs load and describe a layout that can run.

Each `configs/train/*_sp*.yaml` is checked for 64 GPUs (8 nodes x 8, the paper's combinatorial
setup): SP divides the heads, the token count and the GPUs per node (one SP group per node), ZeRO
is not stage 3, and the global batch is the paper's 256.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from phyworld.config import load_config
from training.config import TrainConfig
from training.engine import global_batch_size
from training.model import DIT_CONFIGS

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "train").glob("*_sp*.yaml"))
GPUS, GPUS_PER_NODE, PAPER_BATCH = 64, 8, 256
LATENT_DOWNSAMPLE = 8  # SD's VAE and ours at 256x256


def test_there_are_sp_configs_for_dit_l_and_xl() -> None:
    sizes = {load(path).model.size for path in CONFIGS}
    assert {"L", "XL"} <= sizes, f"expected DiT-L and DiT-XL SP configs, found {sizes}"


def load(path: Path) -> TrainConfig:
    return load_config(TrainConfig, [str(path), "data.path=/data", "vae.path=/vae"])


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_sp_config_is_runnable_on_64_gpus(path: Path) -> None:
    cfg = load(path)
    sp = cfg.parallel.sequence_parallel_size
    assert sp > 1
    assert GPUS_PER_NODE % sp == 0, "an SP group should fit on one node"
    assert DIT_CONFIGS[cfg.model.size].num_heads % sp == 0
    assert cfg.data.resolution == 256
    latent = cfg.data.resolution // LATENT_DOWNSAMPLE
    tokens = (cfg.data.frames // cfg.model.patch_t) * (latent // cfg.model.patch_hw) ** 2
    assert tokens % sp == 0
    assert cfg.parallel.zero_stage in (1, 2)
    assert global_batch_size(cfg, GPUS // sp) == PAPER_BATCH
