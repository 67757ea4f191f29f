"""The DeepSpeed config built from a TrainConfig: batch arithmetic, precision, schedule, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from phyworld.config import ConfigError, load_config
from training.config import TrainConfig
from training.engine import EngineConfigError, deepspeed_config, global_batch_size, lr_multiplier


def config(*overrides: str) -> TrainConfig:
    return load_config(TrainConfig, ["output_dir=/tmp/x", "data.path=/tmp/d", *overrides])


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_zero_stage_and_batch_reach_deepspeed(stage: int) -> None:
    cfg = config(
        f"parallel.zero_stage={stage}", "parallel.micro_batch_size=4", "parallel.grad_accum_steps=3"
    )
    ds = deepspeed_config(cfg, dp_size=8)
    assert ds["zero_optimization"]["stage"] == stage
    assert ds["train_batch_size"] == 4 * 3 * 8
    assert ds["gradient_accumulation_steps"] == 3
    assert ds["gradient_clipping"] == cfg.optim.grad_clip
    assert ds["optimizer"]["params"]["torch_adam"] is True


def test_global_batch_mismatch_names_the_fix() -> None:
    cfg = config("parallel.micro_batch_size=8", "parallel.global_batch_size=256")
    assert global_batch_size(cfg, dp_size=32) == 256  # 8 x 1 x 32
    with pytest.raises(EngineConfigError, match=r"grad_accum_steps=2"):
        global_batch_size(cfg, dp_size=16)
    with pytest.raises(EngineConfigError, match="not a multiple"):
        global_batch_size(cfg, dp_size=12)


def test_precision_fp32_on_cpu_and_explicit_bf16() -> None:
    assert (
        deepspeed_config(config("parallel.precision=auto"), 1)["bf16"]["enabled"] is False
    )  # no GPU here
    assert deepspeed_config(config("parallel.precision=bf16"), 1)["bf16"]["enabled"] is True
    with pytest.raises(ConfigError, match=r"parallel.precision to one of auto \| bf16 \| fp32"):
        config("parallel.precision=fp16")  # refused when the config loads


def test_warmup_then_constant_or_cosine() -> None:
    cfg = config(
        "optim.warmup_steps=10", "max_steps=110", "optim.schedule=cosine", "optim.min_lr_ratio=0.1"
    )
    assert lr_multiplier(0, cfg) == pytest.approx(0.1)
    assert lr_multiplier(9, cfg) == pytest.approx(1.0)
    assert lr_multiplier(10, cfg) == pytest.approx(1.0)
    assert lr_multiplier(60, cfg) == pytest.approx(0.55)
    assert lr_multiplier(110, cfg) == pytest.approx(0.1)
    assert lr_multiplier(500, config("optim.warmup_steps=10")) == 1.0
    with pytest.raises(ConfigError, match=r"optim.schedule to one of constant \| cosine"):
        config("optim.schedule=linear")


def test_bad_zero_stage() -> None:
    with pytest.raises(ConfigError, match=r"'parallel.zero_stage': 4; .* one of 0 \| 1 \| 2 \| 3"):
        config("parallel.zero_stage=4")


CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "train").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_load_with_the_papers_batch(path: Path) -> None:
    cfg = load_config(TrainConfig, [str(path), "data.path=/d", "vae.path=/v"])
    if cfg.model.size == "tiny":
        return
    gpus = 64 if "phyre" in path.stem else 32  # the paper's clusters
    assert global_batch_size(cfg, gpus // cfg.parallel.sequence_parallel_size) == 256
    assert cfg.diffusion.cond_frames == (1 if "phyre" in path.stem else 3)
    assert cfg.model.size.lower() in path.stem.split("_")
