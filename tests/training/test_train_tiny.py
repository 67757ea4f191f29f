"""The tiny CPU config trains from a generated dataset: its loss falls, TensorBoard holds scalars
and a video, checkpoints have the documented layout, and a second launch resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from harness import TINY_CONFIG, run_training
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from phyworld.config import load_config
from training.checkpoint import CheckpointError, RunShape, check_compatible
from training.config import TrainConfig
from training.model import build_dit

STEPS = 40


def events(run: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def tiny_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path
) -> tuple[Path, list[str]]:
    run = tmp_path_factory.mktemp("runs") / "tiny"
    args = [
        str(TINY_CONFIG),
        f"data.path={tiny_dataset}",
        f"output_dir={run}",
        f"max_steps={STEPS}",
        "checkpoint.every_steps=10",
        "logging.every_steps=5",
        "logging.video_every_steps=20",
    ]
    result = run_training(args)
    assert "step      40 | loss" in result.stdout
    return run, args


def test_loss_falls(tiny_run: tuple[Path, list[str]]) -> None:
    losses = [e.value for e in events(tiny_run[0]).Scalars("train/loss")]
    assert len(losses) == STEPS // 5
    assert losses[-1] < 0.8 * losses[0], losses


def test_tensorboard_scalars_and_video(tiny_run: tuple[Path, list[str]]) -> None:
    tags = events(tiny_run[0]).Tags()
    for tag in (
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "perf/samples_per_s",
        "perf/tokens_per_s",
        "perf/peak_memory_gib",
    ):
        assert tag in tags["scalars"], tag
    videos = events(tiny_run[0]).Images("samples/truth_vs_generated")
    assert [v.step for v in videos] == [20, 40]
    assert videos[0].width == 2 * 32 and videos[0].height == 32  # truth | generated, side by side
    assert videos[0].encoded_image_string[:3] == b"GIF"


def test_checkpoint_layout(tiny_run: tuple[Path, list[str]]) -> None:
    root = tiny_run[0] / "checkpoints"
    assert (root / "latest").read_text() == f"step_{STEPS:08d}"
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("step_")) == [
        "step_00000030",
        "step_00000040",
    ]
    ckpt = root / f"step_{STEPS:08d}"
    for name in (
        "COMPLETE",
        "meta.json",
        "config.yaml",
        "weights.pt",
        "rank_00000.pt",
        "deepspeed",
    ):
        assert (ckpt / name).exists(), name
    meta = json.loads((ckpt / "meta.json").read_text())
    assert (meta["step"], meta["world_size"], meta["global_batch_size"]) == (STEPS, 1, 8)
    weights = torch.load(ckpt / "weights.pt", weights_only=True)
    cfg = load_config(TrainConfig, [str(ckpt / "config.yaml")])
    model = build_dit(cfg.model, latent_channels=48)
    model.load_state_dict(weights["model"])  # strict: every key, every shape
    model.load_state_dict(weights["ema"])
    assert not torch.equal(
        weights["model"]["final_layer.linear.weight"], weights["ema"]["final_layer.linear.weight"]
    )


def test_second_launch_resumes(tiny_run: tuple[Path, list[str]]) -> None:
    _, args = tiny_run
    result = run_training([*args, f"max_steps={STEPS + 5}"])
    assert f"at step {STEPS}" in result.stdout
    assert f"step      {STEPS + 5} | loss" in result.stdout
    assert "step      45" in result.stdout and "step       5 |" not in result.stdout


def test_incompatible_resume_is_refused_with_the_fix(tiny_run: tuple[Path, list[str]]) -> None:
    ckpt = tiny_run[0] / "checkpoints" / f"step_{STEPS:08d}"
    cfg = load_config(TrainConfig, [str(ckpt / "config.yaml")])
    same = RunShape(world_size=1, dp_size=1, sp_size=1, global_batch_size=8)
    check_compatible(ckpt, cfg, same, zero_stage=2)
    with pytest.raises(CheckpointError, match=r"global batch 8, this run has 16"):
        check_compatible(ckpt, cfg, RunShape(2, 2, 1, 16), zero_stage=2)
    check_compatible(ckpt, cfg, RunShape(2, 2, 1, 8), zero_stage=2)  # another layout: resharded
    with pytest.raises(CheckpointError, match=r"ZeRO stage 2, this run 3"):
        check_compatible(ckpt, cfg, same, zero_stage=3)
    bigger = load_config(TrainConfig, [str(ckpt / "config.yaml"), "model.size=S"])
    with pytest.raises(CheckpointError, match=r"model.size: checkpoint 'tiny', config 'S'"):
        check_compatible(ckpt, bigger, same, zero_stage=2)


def test_cli_reports_a_model_size_change_clearly(tiny_run: tuple[Path, list[str]]) -> None:
    _, args = tiny_run
    result = run_training([*args, "model.size=S", f"max_steps={STEPS + 10}"], check=False)
    assert result.returncode == 2
    assert "training: error: checkpoint" in result.stderr and "another model" in result.stderr
    assert "Traceback" not in result.stderr


def test_generator_continues_videos(tiny_run: tuple[Path, list[str]], tiny_dataset: Path) -> None:
    from phyworld.data.shards import iter_samples
    from training.inference import load_generator

    run = tiny_run[0]
    gen = load_generator(run)  # a run directory resolves to its newest checkpoint
    assert gen.checkpoint.name.startswith("step_") and gen.config.model.size == "tiny"
    videos = np.stack([s["frames"] for _, s in zip(range(2), iter_samples(str(tiny_dataset)))])
    out = gen.generate(videos, cond_frames=3, steps=4, seed=1)
    assert out.shape == videos.shape and out.dtype == np.uint8
    assert np.array_equal(out[:, :3], videos[:, :3])  # the given frames come back unchanged
    assert np.array_equal(out, gen.generate(videos, cond_frames=3, steps=4, seed=1))
    assert not np.array_equal(
        out[:, 3:], gen.generate(videos, cond_frames=3, steps=4, seed=2)[:, 3:]
    )
    raw = load_generator(run / "checkpoints" / f"step_{STEPS:08d}", ema=False)
    assert not torch.equal(raw.model.final_layer.linear.weight, gen.model.final_layer.linear.weight)
    with pytest.raises(ValueError, match=r"uint8 frames of shape \(B, T, H, W, 3\)"):
        gen.generate(videos[0], cond_frames=3)
