"""The DeepSpeed config built from a TrainConfig: batch arithmetic, precision, schedule, errors."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from doc_commands import default_config, node_counts
from harness import launched_shape

from phyworld.config import ConfigError, load_config
from pipeline.study import _sbatch_values
from training.config import TrainConfig
from training.engine import (
    EngineConfigError,
    deepspeed_config,
    global_batch_size,
    lr_multiplier,
)


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
    with pytest.raises(EngineConfigError, match=r"fix it: launch on 32 processes \(GPUs\), or"):
        global_batch_size(cfg, dp_size=12)  # no accumulation fits 96 per step


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


# ---------------------------------------------------------------------------------------------
#     Every documented launch of a training config passes the engine's own start-up checks
# ---------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
TRAIN_CONFIGS = sorted((REPO / "configs" / "train").glob("*.yaml"))
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Launched by code rather than by a documented command: python -m pipeline.quickstart (1 process).
LAUNCHED_BY_CODE = {"configs/train/quickstart.yaml": 1}


@dataclass(frozen=True)
class Launch:
    """One documented way to start training: where it is written, its world size and arguments."""

    source: str
    world_size: int
    args: tuple[str, ...]  # CONFIG.yaml [key=value ...], as `python -m training` gets them


def _commands(text: str) -> list[str]:
    """Shell commands in a doc or a config header: `\\` continuations joined, `#` stripped."""
    lines = [re.sub(r"\s+#\s.*", "", re.sub(r"^\s*#\s?", "", line)) for line in text.splitlines()]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [
        m.group(0)
        for m in re.finditer(r"(?:slurm/submit\.sh|sbatch|torchrun|python) [^\n`|]*", joined)
    ]


def _launches(source: str, command: str) -> list[Launch]:
    """The launches a command makes (one per node count of a `--nodes=A-B` range), or none if it
    does not start training on a shipped config."""
    tokens = shlex.split(command)
    script = next((t for t in tokens if re.fullmatch(r"slurm/train_\w+\.sh", t)), None)
    rest = tokens[tokens.index(script) + 1 :] if script else tokens
    if script is None and "training" not in tokens:
        return []
    if script is None:
        rest = rest[rest.index("training") + 1 :]
        if not rest:
            return []
    if rest and "=" not in rest[0] and not (REPO / rest[0]).is_file():
        return []  # a placeholder (CONFIG.yaml) or another entry point
    if script is not None:
        header = _sbatch_values(REPO / script, tokens[: tokens.index(script)])
        size = re.fullmatch(r"slurm/train_(\w+)\.sh", script).group(1).upper()
        config = rest[0] if rest and "=" not in rest[0] else default_config(script)
        assert config, f"{script} names no default config"
        overrides = rest[1:] if rest and "=" not in rest[0] else rest
        return [
            Launch(
                source,
                nodes * int(header["ntasks-per-node"]),
                (config, f"model.size={size}", *overrides),
            )
            for nodes in node_counts(header["nodes"])
        ]
    if "torchrun" in tokens[0]:
        flags = dict(re.findall(r"--(nproc[-_]per[-_]node|nnodes)[= ](\d+)", command))
        world = int(flags.get("nproc-per-node", flags.get("nproc_per_node", 1)))
        world *= int(flags.get("nnodes", 1))
    else:
        world = 1
    return [Launch(source, world, tuple(rest))]


def documented_launches() -> list[Launch]:
    launches = []
    for path in [*DOCS, *TRAIN_CONFIGS]:
        for command in _commands(path.read_text()):
            launches += _launches(str(path.relative_to(REPO)), command)
    for script in sorted((REPO / "slurm").glob("train_*.sh")):
        launches += _launches(f"bare sbatch {script.name}", f"sbatch slurm/{script.name}")
    for config, world in LAUNCHED_BY_CODE.items():
        launches.append(Launch("code", world, (config,)))
    return launches


LAUNCHES = documented_launches()


def test_every_training_config_has_a_documented_launch() -> None:
    launched = {launch.args[0] for launch in LAUNCHES}
    missing = [
        str(p.relative_to(REPO)) for p in TRAIN_CONFIGS if str(p.relative_to(REPO)) not in launched
    ]
    assert not missing, f"configs nobody documents how to launch: {missing}"
    assert len(LAUNCHES) >= len(TRAIN_CONFIGS) + 4  # the config headers, the docs, 4 bare scripts


@pytest.mark.parametrize(
    "launch", LAUNCHES, ids=[f"{x.source}:{x.world_size}:{Path(x.args[0]).stem}" for x in LAUNCHES]
)
def test_documented_launch_passes_the_engine_checks(launch: Launch) -> None:
    """The config as launched (world size from the sbatch header and options, or torchrun's
    flags) gets through what `python -m training` checks before it builds anything."""
    cfg, shape = launched_shape([str(REPO / launch.args[0]), *launch.args[1:]], launch.world_size)
    deepspeed_config(cfg, shape.dp_size)  # precision, ZeRO stage and schedule names
    paper = "phyre" in launch.args[0] or "kinematics" in launch.args[0] or "_dit_" in launch.args[0]
    if paper and not any(a.startswith("parallel.global_batch_size=") for a in launch.args):
        assert shape.global_batch_size == 256, "the paper's global batch"


def test_fused_adamw_on_cuda_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "fused" not in deepspeed_config(config(), 1)["optimizer"]["params"]  # CPU here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert deepspeed_config(config(), 1)["optimizer"]["params"]["fused"] is True
    assert "fused" not in deepspeed_config(config("parallel.device=cpu"), 1)["optimizer"]["params"]
