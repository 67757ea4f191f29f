"""`python -m training.study STUDY executor=local`: the same plan, run job by job on this machine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from phyworld.config import ConfigError, load_config
from training.study import Job, StudyConfig, StudyJobFailed, main, plan, run_local

REPO = Path(__file__).resolve().parents[2]
CPU_MINI = REPO / "configs" / "studies" / "cpu_mini.yaml"


def cpu_mini(tmp_path: Path, *overrides: str) -> StudyConfig:
    return load_config(
        StudyConfig,
        [str(CPU_MINI), f"data_root={tmp_path}/data", f"run_root={tmp_path}/runs", *overrides],
    )


def test_each_job_maps_to_its_python_module(tmp_path: Path) -> None:
    study = cpu_mini(tmp_path)
    jobs = {j.name: j for j in plan(study)}
    data, runs = f"{tmp_path}/data", f"{tmp_path}/runs"
    # a dataset: one datagen process that generates and merges (mode=all); its merge job is empty
    gen = jobs["pw-cpu_mini-data-uniform_8x4"]
    assert gen.command[:3] == [
        "datagen",
        "configs/data/uniform_base.yaml",
        f"output={data}/uniform_8x4",
    ]
    assert "grid.v=8" in gen.command and not any(a.startswith("mode=") for a in gen.command)
    assert jobs["pw-cpu_mini-data-uniform_8x4-merge"].command == []
    # a training run: `training` with the grid's config, its model size and its training set
    train = jobs["pw-cpu_mini-train-dit_mini_uniform_32x8"].command
    assert train[:3] == ["training", "configs/train/quickstart.yaml", "model.size=mini"]
    assert f"data.path={data}/uniform_32x8" in train
    assert f"output_dir={runs}/dit_mini_uniform_32x8" in train
    # its eval scores the finished run once: no watcher, the study's overrides, watch=false last
    ev = jobs["pw-cpu_mini-eval-dit_mini_uniform_32x8"].command
    assert ev[:3] == [
        "eval",
        "configs/eval/tiny_cpu.yaml",
        f"checkpoint={runs}/dit_mini_uniform_32x8",
    ]
    assert ev[-1] == "watch=false" and "watch=true" not in ev
    assert {"parser.primary=alpha", "metric=paper"} <= set(ev)
    assert [s["name"] for s in json.loads(ev[3].removeprefix("sets="))] == [
        "uniform_eval_id",
        "uniform_eval_v_out",
        "uniform_eval_r_out",
    ]
    report = jobs["pw-cpu_mini-report"].command
    assert report[:2] == ["eval.report", f"out={runs}/report"] and len(report) == 2 + 6


def test_the_local_executor_needs_no_slurm_script_for_its_model_sizes(tmp_path: Path) -> None:
    assert plan(cpu_mini(tmp_path))  # DiT-tiny and DiT-mini have no slurm/train_*.sh
    with pytest.raises(ConfigError, match=r"no slurm/train_tiny\.sh"):
        plan(cpu_mini(tmp_path, "executor=slurm"))


def test_a_local_dry_run_needs_neither_sbatch_nor_site_sh(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with bash only: no sbatch, squeue or scontrol
    bin_dir.mkdir()
    (bin_dir / "bash").symlink_to("/bin/bash")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("PHYWORLD_DATA_ROOT", f"{tmp_path}/d")
    monkeypatch.setenv("PHYWORLD_RUN_ROOT", f"{tmp_path}/r")
    monkeypatch.setattr("training.study.SITE", tmp_path / "no_site.sh")
    main([str(CPU_MINI), "dry_run=true"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 + 2 * 6 + 1  # datasets, run and eval of each grid point, the report
    assert lines[0].startswith(
        f"python -m datagen configs/data/uniform_base.yaml output={tmp_path}/d/cpu_mini/"
    )
    assert not (tmp_path / "r").exists()  # a dry run runs nothing


def _finish(study: StudyConfig, tmp_path: Path) -> None:
    """Mark every output of the study as written: datasets, final checkpoints, evals, report."""
    for key in study.datasets:
        (tmp_path / "data" / key).mkdir(parents=True)
        (tmp_path / "data" / key / "manifest.json").write_text("{}")
    for run in (
        tmp_path / "runs" / f"dit_{m}_{t}"
        for m in ("tiny", "mini")
        for t in study.grids[0].train_sets
    ):
        step = run / "checkpoints" / "step_00000800"
        step.mkdir(parents=True)
        (step / "meta.json").write_text(json.dumps({"step": 800}))
        (run / "checkpoints" / "latest").write_text(step.name)
        (run / "eval").mkdir()
        (run / "eval" / "metrics.jsonl").write_text("{}\n")
    (tmp_path / "runs" / "report").mkdir()


def test_a_finished_study_runs_nothing(tmp_path: Path, capsys) -> None:
    study = cpu_mini(tmp_path)
    _finish(study, tmp_path)
    jobs = plan(study)
    assert all(j.done for j in jobs)
    run_local(study, jobs, tmp_path / "logs")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[study 1/19] data uniform_4x2: done, skipped"
    assert "[study 7/19] train dit_tiny_uniform_4x2: done, skipped" in out
    assert sum("done, skipped" in line for line in out) == 19
    assert not (tmp_path / "logs").exists()  # nothing was started


def test_a_half_done_study_runs_only_what_is_left(tmp_path: Path) -> None:
    study = cpu_mini(tmp_path)
    _finish(study, tmp_path)
    (tmp_path / "runs" / "dit_mini_uniform_8x4" / "checkpoints" / "latest").unlink()
    todo = [j.name for j in plan(study) if j.command and not j.done]
    assert todo == [
        "pw-cpu_mini-train-dit_mini_uniform_8x4",
        "pw-cpu_mini-eval-dit_mini_uniform_8x4",
        "pw-cpu_mini-report",  # the report is redone once a run changed
    ]


def test_a_failed_job_ends_the_study_naming_its_log_and_command(tmp_path: Path, capsys) -> None:
    study = StudyConfig(name="broken")
    jobs = [
        Job(name="pw-broken-data-a", script="", args=[], command=["datagen", "no_such.yaml"]),
        Job(name="pw-broken-report", script="", args=[], command=["eval.report", "nowhere"]),
    ]
    with pytest.raises(StudyJobFailed) as err:
        run_local(study, jobs, tmp_path / "logs")
    log = tmp_path / "logs" / "pw-broken-data-a.log"
    assert str(err.value) == (
        f"job pw-broken-data-a failed with status 2: see {log}; its command (in {REPO}): "
        "python -m datagen no_such.yaml"
    )
    assert "no_such.yaml" in log.read_text()  # the job's own error is in its log
    assert "[study 1/2] data a ..." in capsys.readouterr().out
    assert not (tmp_path / "logs" / "pw-broken-report.log").exists()  # nothing after it ran
    assert os.listdir(tmp_path / "logs") == [log.name]
