"""The eval job end to end: `python -m eval` on checkpoints, the watcher, the report and plot.

Fast tests use a stand-in checkpoint (a randomly initialised tiny DiT written in the checkpoint
layout of ARCHITECTURE.md); the slow test evaluates checkpoints written by a real training run.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from evalkit import REPO
from harness import craft_pickle, flip
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import phyworld  # noqa: F401
from eval.__main__ import main as eval_cli
from eval.__main__ import run as eval_main
from eval.evaluate import LABEL_PX, CheckpointLoadError
from eval.fvd import WeightsError
from eval.report import main as report_main
from eval.report import plot_figure3, run_rows, write_table2
from eval.watch import read_metrics
from phyworld.config import ConfigError, load_config, to_yaml
from phyworld.data.runs import META, WEIGHTS, step_dir
from training.autoencoders import build_autoencoder
from training.checkpoint_files import write_manifest
from training.config import TrainConfig
from training.model import build_dit

TINY_TRAIN = REPO / "configs" / "train" / "tiny_cpu.yaml"
EVAL_TINY = REPO / "configs" / "eval" / "tiny_cpu.yaml"


def make_dataset(root: Path, config: str, *overrides: str) -> Path:
    from datagen.__main__ import main as datagen

    args = [str(REPO / "configs" / "data" / config), f"output={root}", "progress=false", *overrides]
    assert datagen(args) == 0
    return root


@pytest.fixture(scope="module")
def eval_sets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evalsets")
    small = ("frames=16", "resolution=32")
    return {
        "id": make_dataset(root / "uniform_id", "uniform_eval_id.yaml", "count=4", *small),
        "v_out": make_dataset(root / "uniform_v_out", "uniform_eval_v_out.yaml", "count=3", *small),
    }


def write_checkpoint(run: Path, step: int, complete: bool = True, **overrides: str) -> Path:
    """A stand-in checkpoint: a random tiny DiT in the layout training writes."""
    args = [
        str(TINY_TRAIN),
        f"output_dir={run}",
        "data.path=unused",
        *[f"{k}={v}" for k, v in overrides.items()],
    ]
    cfg = load_config(TrainConfig, args)
    torch.manual_seed(step)
    model = build_dit(cfg.model, build_autoencoder(cfg.vae).latent_channels)
    path = step_dir(run, step)
    path.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "ema": model.state_dict()}, path / WEIGHTS)
    (path / "config.yaml").write_text(to_yaml(cfg))
    (path / META).write_text(json.dumps({"step": step}))
    (run / "config.yaml").write_text(to_yaml(cfg))
    if complete:
        mark_complete(path)
    return path


def mark_complete(path: Path) -> None:
    write_manifest(path, {})


def eval_args(
    run: Path,
    sets: dict[str, Path],
    *extra: str,
    kinds: tuple[str, str] = ("kinematic", "kinematic"),
) -> list[str]:
    return [
        str(EVAL_TINY),
        f"checkpoint={run}",
        "sets="
        + json.dumps(
            [
                {"name": "uniform_id", "path": str(sets["id"]), "kind": kinds[0]},
                {"name": "uniform_v_out", "path": str(sets["v_out"]), "kind": kinds[1]},
            ]
        ),
        "sample_steps=2",
        "batch_size=4",
        *extra,
    ]


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory, eval_sets) -> Path:
    run = tmp_path_factory.mktemp("runs") / "tiny"
    write_checkpoint(run, 10)
    assert eval_main(eval_args(run, eval_sets)) == 0
    return run


def test_metrics_jsonl_has_model_and_floors_per_set(evaluated_run):
    records = read_metrics(evaluated_run)
    assert [(r["checkpoint"], r["set"]) for r in records] == [
        ("step_00000010", "uniform_id"),
        ("step_00000010", "uniform_v_out"),
    ]
    for r in records:
        assert r["step"] == 10 and r["level"] in ("id", "v_out") and r["n"] in (4, 3)
        # Floors at 32 px (a pixel is 0.31 world units): the sub-pixel parser's is ~10x lower.
        assert r["vel_error.alpha.gt"] < 0.1 < r["vel_error.threshold.gt"] < 1.0
        # An untrained model's video parses (the fixed seed gives it a ball to follow), but not
        # as the truth does: a number, above the ground truth's floor, and no note.
        assert "note" not in r, r["note"]
        assert r["vel_error"] > r["vel_error_gt"]
        assert r["vel_error_vae"] == pytest.approx(
            r["vel_error_gt"], abs=0.05
        )  # pixel VAE: lossless


def test_tensorboard_scalars_and_side_by_side_video(evaluated_run):
    acc = EventAccumulator(str(evaluated_run / "tb"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert "eval/uniform_id/vel_error_gt" in scalars
    assert [e.step for e in acc.Scalars("eval/uniform_id/vel_error_gt")] == [10]
    assert "eval/uniform_id/gt_vae_generated" in acc.Tags()["images"]
    gif = evaluated_run / "eval" / "videos" / "step_00000010" / "uniform_id.gif"
    from PIL import Image

    with Image.open(gif) as im:
        # gt | vae | generated, 2 clips, each panel under a strip that names it
        assert im.n_frames == 16 and im.size == (3 * 32, 2 * (LABEL_PX + 32))
        header = np.asarray(im.convert("RGB"))[:LABEL_PX]
    # every panel's strip holds dark text pixels on white
    assert all((header[:, i * 32 : (i + 1) * 32] < 100).any() for i in range(3))


def test_watcher_evaluates_each_new_complete_checkpoint_once(evaluated_run, eval_sets):
    write_checkpoint(evaluated_run, 20)
    write_checkpoint(evaluated_run, 30, complete=False)  # still being written: never read
    args = eval_args(evaluated_run, eval_sets, "watch=true", "poll_s=0.05", "stop_after_s=0.2")
    assert eval_main(args) == 0
    steps = sorted({r["step"] for r in read_metrics(evaluated_run)})
    assert steps == [10, 20]
    before = (evaluated_run / "eval" / "metrics.jsonl").read_text()
    assert eval_main(args) == 0  # a restarted watcher finds nothing new
    assert (evaluated_run / "eval" / "metrics.jsonl").read_text() == before


def test_report_table_and_figure(evaluated_run, tmp_path):
    out = tmp_path / "report"
    assert report_main([str(evaluated_run), f"out={out}"]) == 0
    with open(out / "table.csv") as f:
        rows = list(csv.DictReader(f))
    newest = max(r["step"] for r in read_metrics(evaluated_run))  # the newest checkpoint only
    assert {r["set"] for r in rows} == {"uniform_id", "uniform_v_out"}
    assert all(r["step"] == str(newest) for r in rows)
    assert (out / "fig3_velocity_error.png").stat().st_size > 0
    # The figure, looked at: labelled axes, plotted values equal to the table's.
    table = run_rows(evaluated_run)
    for r in table:
        r["data_size"] = 1000  # the stand-in run has no readable training set
    fig = plot_figure3(table, tmp_path / "fig.png")
    id_ax, ood_ax = fig.axes
    assert id_ax.get_xlabel() == "training videos" and "velocity error" in id_ax.get_ylabel()
    model_line = next(line for line in id_ax.get_lines() if line.get_label() == "DiT-tiny")
    expected = next(r for r in table if r["level"] == "id")
    vel = expected["vel_error"]
    np.testing.assert_allclose(model_line.get_ydata(), [vel if vel is not None else np.nan])
    floor = next(line for line in ood_ax.get_lines() if "GT" in line.get_label())
    np.testing.assert_allclose(floor.get_ydata()[0], np.mean([r["vel_error_gt"] for r in table]))


def test_table2_puts_in_and_out_of_template_side_by_side(tmp_path):
    rows = [
        {
            "model": "XL",
            "data": "phyre_train60",
            "level": level,
            "fvd": fvd,
            "ssim": 0.97,
            "psnr": 32.0,
            "lpips": 0.03,
            "abnormal": ab,
        }
        for level, fvd, ab in (("in_template", 17.6, 0.02), ("out_template", 18.7, 0.10))
    ]
    text = write_table2(rows, tmp_path)
    assert (
        "| DiT-XL | phyre_train60 | 17.6 / 18.7 | 0.97 / 0.97 | 32 / 32 | 0.03 / 0.03 | 0.02 / 0.1 |"
        in text
    )
    assert (tmp_path / "table2.md").read_text() == text


def test_bad_inputs_are_clear_errors(tmp_path, eval_sets):
    run = tmp_path / "run"
    path = write_checkpoint(run, 10, complete=False)
    text = (path / "config.yaml").read_text().replace("model:\n", "model:\n  wings: 2\n", 1)
    (path / "config.yaml").write_text(text)
    mark_complete(path)
    with pytest.raises(CheckpointLoadError, match="config this code does not know"):
        eval_main(eval_args(run, eval_sets))
    with pytest.raises(WeightsError, match="does not exist"):
        eval_main(
            [
                *eval_args(run, eval_sets, kinds=("kinematic", "combinatorial")),
                f"fvd.weights={tmp_path}/no.pt",
            ]
        )
    other_run = tmp_path / "other_run"
    write_checkpoint(other_run, 10)
    with pytest.raises(ConfigError, match=r"'sets.1.kind': 'magic'; .* kinematic \| combinatorial"):
        eval_main(eval_args(other_run, eval_sets, kinds=("kinematic", "magic")))


def test_cli_prints_one_line_errors(tmp_path, capsys, eval_sets):
    assert eval_cli([str(EVAL_TINY)]) == 2
    assert "set checkpoint=PATH" in capsys.readouterr().err
    sets = [f"sets.0.path={eval_sets['id']}", f"sets.1.path={eval_sets['v_out']}"]
    assert (
        eval_cli(
            [
                str(EVAL_TINY),
                f"checkpoint={tmp_path}/nothing",
                *sets,
                "lpips.sha256=x",
                "fvd.weights=/no",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("eval: error:") and f"{tmp_path}/nothing does not exist" in err


def test_eval_refuses_a_corrupt_or_crafted_checkpoint(tmp_path, eval_sets, capsys):
    run = tmp_path / "run"
    path = write_checkpoint(run, 10)
    flip(path / "weights.pt")  # 64 bytes, same size
    for target in (path, run):  # the checkpoint, or the run (its newest checkpoint)
        assert eval_cli(eval_args(target, eval_sets)) == 2
        err = capsys.readouterr().err
        assert err.startswith(
            f"eval: error: checkpoint {path} is corrupt (weights.pt: content differs from COMPLETE"
        )
    assert not (run / "eval" / "metrics.jsonl").exists()

    marker = tmp_path / "pwned"
    craft_pickle(path / "weights.pt", marker)
    mark_complete(path)  # a forged manifest that agrees with the crafted file
    assert eval_cli(eval_args(path, eval_sets)) == 2
    assert f"refusing to load {path / 'weights.pt'}" in capsys.readouterr().err
    assert not marker.exists()


def test_watcher_skips_a_corrupt_checkpoint_and_fails_at_the_end(tmp_path, eval_sets, capsys):
    run = tmp_path / "run"
    write_checkpoint(run, 10)
    flip(write_checkpoint(run, 20) / "weights.pt")
    write_checkpoint(run, 30)
    args = eval_args(run, eval_sets, "watch=true", "poll_s=0.05", "stop_after_s=0.3")
    assert eval_cli(args) == 2
    err = capsys.readouterr().err
    assert sorted({r["step"] for r in read_metrics(run)}) == [10, 30]  # the others: evaluated
    assert err.count("[eval] error:") == 1  # said once, not retried every poll
    assert "step_00000020 is corrupt (weights.pt" in err
    assert "eval: error: 1 checkpoint(s) of" in err


def test_eval_of_a_run_without_a_checkpoint_says_so(tmp_path, eval_sets, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("max_steps: 10\n")  # training started, nothing saved yet
    assert eval_cli(eval_args(run, eval_sets)) == 2
    assert f"run {run} has no checkpoint yet" in capsys.readouterr().err


@pytest.mark.slow
def test_trained_checkpoint_end_to_end(tmp_path):
    """A real tiny training run, then the watcher on uniform ID/OOD and a small combinatorial set."""
    data = make_dataset(
        tmp_path / "train",
        "uniform_base.yaml",
        "sampling=random",
        "count=32",
        "frames=8",
        "resolution=32",
    )
    run = tmp_path / "run"
    train = [
        str(TINY_TRAIN),
        f"data.path={data}",
        f"output_dir={run}",
        "max_steps=20",
        "checkpoint.every_steps=10",
        "logging.video_every_steps=0",
    ]
    env = {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    subprocess.run(
        [sys.executable, "-m", "training", *train],
        cwd=REPO,
        env=env,
        check=True,
        timeout=600,
        capture_output=True,
    )
    small = ("frames=16", "resolution=32")
    sets = {
        "id": make_dataset(tmp_path / "uid", "uniform_eval_id.yaml", "count=4", *small),
        "v_out": make_dataset(tmp_path / "uvo", "uniform_eval_v_out.yaml", "count=4", *small),
        "phyre": make_dataset(
            tmp_path / "ph",
            "phyre_eval_out_template.yaml",
            "options.templates=60,61",
            "options.videos_per_template=1",
            "frames=16",
            "resolution=128",  # the detector's thresholds are set for >= 128 px
        ),
    }
    config = tmp_path / "eval.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "device": "cpu",
                "sample_steps": 2,
                "batch_size": 4,
                "fvd": {"num_videos": 2},
                "sets": [
                    {"name": "uniform_id", "path": str(sets["id"])},
                    {"name": "uniform_v_out", "path": str(sets["v_out"])},
                    {"name": "phyre_out", "path": str(sets["phyre"]), "kind": "combinatorial"},
                ],
            }
        )
    )
    args = [str(config), f"checkpoint={run}", "watch=true", "poll_s=0.1", "stop_after_s=0.5"]
    assert eval_main(args) == 0
    records = read_metrics(run)
    assert sorted({r["step"] for r in records}) == [10, 20]
    phyre = [r for r in records if r["set"] == "phyre_out"]
    for r in phyre:
        assert np.isfinite(r["fvd"]) and r["fvd_n"] == 2
        assert 0 <= r["ssim"] <= 1 and r["lpips"] >= 0 and r["psnr"] > 0
        assert r["abnormal.gt"] == 0.0 and 0 <= r["abnormal"] <= 1
    out = tmp_path / "report"
    assert report_main([str(run), f"out={out}"]) == 0
    with open(out / "table.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["data_size"] for r in rows} == {"32"}
    assert (out / "fig3_velocity_error.png").stat().st_size > 0


def test_training_finished_when_the_newest_checkpoint_is_the_last(tmp_path):
    from eval.watch import training_finished

    def checkpoint(step: int, complete: bool = True) -> None:
        path = tmp_path / "checkpoints" / f"step_{step:08d}"
        path.mkdir(parents=True)
        (path / "config.yaml").write_text("max_steps: 20\n")
        if complete:
            write_manifest(path, {})

    assert not training_finished(tmp_path)  # no checkpoints yet
    checkpoint(10)
    assert not training_finished(tmp_path)
    checkpoint(20, complete=False)  # the last one, broken: skipped with a warning
    with pytest.warns(UserWarning, match="incomplete or corrupt"):
        assert not training_finished(tmp_path)
    write_manifest(tmp_path / "checkpoints" / "step_00000020", {})
    assert training_finished(tmp_path)
    flip(tmp_path / "checkpoints" / "step_00000020" / "config.yaml")  # unreadable max_steps
    assert not training_finished(tmp_path)
