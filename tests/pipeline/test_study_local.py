"""`python -m pipeline.study STUDY executor=local`: the same plan, run job by job on this machine."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phyworld.config import ConfigError, load_config
from pipeline.study import Job, StudyConfig, StudyJobFailed, main, plan, run_local

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
    # steps grow with the data: one grid per training set
    steps = {
        t: next(a for a in jobs[f"pw-cpu_mini-train-dit_tiny_{t}"].command if "max_steps" in a)
        for t in ("uniform_2x4", "uniform_8x4", "uniform_32x8")
    }
    assert steps == {
        "uniform_2x4": "max_steps=1200",
        "uniform_8x4": "max_steps=2400",
        "uniform_32x8": "max_steps=4800",
    }


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
    monkeypatch.setattr("pipeline.study.SITE", tmp_path / "no_site.sh")
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
        for grid in study.grids
        for t in grid.train_sets
    ):
        step = run / "checkpoints" / "step_00004800"  # every grid's max_steps
        step.mkdir(parents=True)
        (step / "meta.json").write_text(json.dumps({"step": 4800}))
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
    assert out[0] == "[study 1/19] data uniform_2x4: done, skipped"
    assert "[study 7/19] train dit_tiny_uniform_2x4: done, skipped" in out
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


TWO_POINT = """
name: two_point
datasets:
  grid_4x2: {config: configs/data/uniform_base.yaml, overrides: [sampling=grid, grid.v=4, grid.r=2, frames=8, resolution=32]}
  grid_8x2: {config: configs/data/uniform_base.yaml, overrides: [sampling=grid, grid.v=8, grid.r=2, frames=8, resolution=32]}
  eval_id: {config: configs/data/uniform_eval_id.yaml, overrides: [sampling=random, count=4, frames=8, resolution=32]}
  eval_v_out: {config: configs/data/uniform_eval_v_out.yaml, overrides: [sampling=random, count=4, frames=8, resolution=32]}
grids:
  - name: uniform
    train_config: configs/train/quickstart.yaml
    models: [tiny]
    train_sets: [grid_4x2, grid_8x2]
    eval_sets: [eval_id, eval_v_out]
    eval_config: configs/eval/tiny_cpu.yaml
    overrides: [max_steps=4, checkpoint.every_steps=4, logging.every_steps=2, logging.video_every_steps=4]
eval_overrides: [parser.primary=alpha, metric=paper, sample_steps=2, num_side_by_side=0]
"""


@pytest.mark.slow
def test_a_two_point_study_runs_locally_to_the_report_and_a_rerun_does_nothing(
    tmp_path: Path, capsys
) -> None:
    """configs/studies/cpu_mini.yaml in small: 1 model x 2 training sets, datagen to figure 3."""
    study = tmp_path / "two_point.yaml"
    study.write_text(TWO_POINT)
    roots = [f"data_root={tmp_path}/data", f"run_root={tmp_path}/runs", "executor=local"]
    main([str(study), *roots])
    out = capsys.readouterr().out
    # 4 datasets, a training run and its eval per training set, the report
    assert "[study 1/9] data grid_4x2 ..." in out
    assert "[study 5/9] train dit_tiny_grid_4x2: done in" in out
    assert "[study 9/9] report: done in" in out
    report = tmp_path / "runs" / "report"
    rows = list(csv.DictReader((report / "table.csv").open()))
    assert sorted((r["data_size"], r["set"]) for r in rows) == [
        ("16", "eval_id"), ("16", "eval_v_out"), ("8", "eval_id"), ("8", "eval_v_out")
    ]  # fmt: skip
    assert all(r["model"] == "tiny" and r["step"] == "4" and r["vel_error_gt"] for r in rows)
    figure = report / "fig3_velocity_error.png"
    assert figure.stat().st_size > 0
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*") if p.is_file()}
    # a re-run finds everything done and starts nothing
    main([str(study), *roots])
    again = capsys.readouterr().out.splitlines()
    assert sum(line.endswith(": done, skipped") for line in again) == 9, again
    assert {
        p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*") if p.is_file()
    } == written


STOPPED_STUDY = """
import sys
from pathlib import Path
from pipeline.study import Job, StudyConfig, run_local
job = Job(name="pw-t-data-a", script="", args=[], command=["http.server", "0", "--bind", "127.0.0.1"])
run_local(StudyConfig(name="t"), [job], Path(sys.argv[1]))
"""


def test_a_sigterm_to_the_study_stops_its_running_job(tmp_path: Path) -> None:
    """It was left running on its own (a training run then kept writing into the study)."""
    study = subprocess.Popen(
        [sys.executable, "-c", STOPPED_STUDY, str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stderr=subprocess.PIPE,
        text=True,
    )
    children = Path(f"/proc/{study.pid}/task/{study.pid}/children")
    deadline = time.monotonic() + 30
    while not children.read_text().split() and time.monotonic() < deadline:
        time.sleep(0.1)
    (job,) = map(int, children.read_text().split())
    study.send_signal(signal.SIGTERM)
    _, err = study.communicate(timeout=30)
    assert "job pw-t-data-a failed with status -15" in err
    with pytest.raises(ProcessLookupError):
        os.kill(job, 0)  # ended, and reaped by the study
