"""A whole study carried out on the test cluster: `python -m pipeline.study` (the real submitter
and slurm/*.sh scripts) on tests/slurm/tiny_study.yaml runs datasets -> VAE -> training grid ->
eval watchers -> report; one training job killed mid-way is redone alone on re-submission, and a
finished study re-submitted submits nothing."""

from __future__ import annotations

import csv
import hashlib
import re
import sys
import time
from pathlib import Path

import pytest

from eval.report import figure3_series
from phyworld.config import load_config
from phyworld.data.runs import latest_step
from pipeline.study import StudyConfig, plan

REPO = Path(__file__).resolve().parents[2]
STUDY = Path(__file__).resolve().parent / "tiny_study.yaml"
RUNS = ("dit_s_small", "dit_s_large", "dit_b_small", "dit_b_large")  # DiT-tiny (s), DiT-micro (b)
KILLED = "dit_s_large"
JOBS = 18  # 4 datasets (array + merge), the VAE, 4 runs and their 4 watchers, the report


def files(root: Path, skip: set[str]) -> dict[str, tuple[int, str]]:
    """Every file under root, but those under the top-level folders in `skip`: (mtime, sha256)."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] not in skip
    }


def test_the_estimate_counts_the_gpus_the_jobs_ask_for(tmp_path: Path) -> None:
    """The study's `sbatch` options apply to its training jobs, so they count for the estimate
    (`--gpus-per-node=0` here: CPU jobs, not the 8 GPUs of the scripts' headers)."""
    roots = [f"data_root={tmp_path}", f"run_root={tmp_path}"]
    runs = [job for job in plan(load_config(StudyConfig, [str(STUDY), *roots])) if job.run_dir]
    assert len(runs) == len(RUNS) and {job.gpus for job in runs} == {1}
    two = load_config(StudyConfig, [str(STUDY), *roots, "sbatch=[--gpus-per-node=2]"])
    assert {job.gpus for job in plan(two) if job.run_dir} == {2}


@pytest.mark.slow
def test_a_study_runs_to_its_report_and_redoes_only_a_killed_run(
    slurm_cluster, tmp_path: Path
) -> None:
    env = {
        "PHYWORLD_LOG_ROOT": str(tmp_path / "logs"),
        "PHYWORLD_PYTHON": sys.executable,
        "OMP_NUM_THREADS": "1",  # 2 cores for every job: torch's default threads thrash them
    }
    runs = tmp_path / "runs" / "tiny"

    def study() -> str:
        roots = [f"data_root={tmp_path}/data/tiny", f"run_root={runs}"]
        out = slurm_cluster.run(
            sys.executable, "-m", "pipeline.study", str(STUDY), *roots, cwd=REPO, timeout=300, **env
        )
        return out

    def submitted(out: str) -> dict[str, str]:
        return dict(re.findall(r"submitted pw-tiny-(\S+): job (\d+)", out))

    def log(job_id: str) -> str:
        return "".join(p.read_text() for p in (tmp_path / "logs").glob(f"*-{job_id}.out"))

    first = study()
    ids = submitted(first)
    assert len(ids) == JOBS, first

    # Kill one training job mid-way: once it has written its first checkpoint (of 4).
    deadline = time.monotonic() + 600
    while latest_step(runs / KILLED) == 0:
        assert time.monotonic() < deadline, log(ids[f"train-{KILLED}"])
        assert slurm_cluster.job(ids[f"train-{KILLED}"]).get("JobState") in {"PENDING", "RUNNING"}
        time.sleep(0.2)
    slurm_cluster.run("scancel", ids[f"train-{KILLED}"])
    slurm_cluster.wait(ids[f"train-{KILLED}"], {"CANCELLED"}, timeout=120)
    assert 0 < latest_step(runs / KILLED) < 40, "it finished before it could be killed"

    # The rest of the study ends; the report waits on the killed job, forever.
    for run in RUNS:
        if run != KILLED:
            slurm_cluster.wait(ids[f"train-{run}"], {"COMPLETED"}, timeout=900)
            slurm_cluster.wait(ids[f"eval-{run}"], {"COMPLETED"}, timeout=600)
    deadline = time.monotonic() + 60
    while slurm_cluster.job(ids["report"]).get("Reason") != "DependencyNeverSatisfied":
        assert time.monotonic() < deadline, slurm_cluster.job(ids["report"])
        time.sleep(1)
    before = files(tmp_path, {"logs"})

    # Re-submitting redoes the killed run (it resumes), its watcher if it gave up, and the report.
    second = study()
    redo = submitted(second)
    assert (
        {f"train-{KILLED}", "report"}
        <= set(redo)
        <= {f"train-{KILLED}", f"eval-{KILLED}", "report"}
    )
    assert f"stale    pw-tiny-report (job {ids['report']}" in second
    assert second.count("done     pw-tiny-") == JOBS - 3  # its watcher: submitted or queued
    slurm_cluster.wait(redo[f"train-{KILLED}"], {"COMPLETED"}, timeout=600)
    assert re.search(
        rf"resumed from \S+/{KILLED}/checkpoints/step_\d+", log(redo[f"train-{KILLED}"])
    )
    slurm_cluster.wait(redo["report"], {"COMPLETED"}, timeout=600)
    after = files(tmp_path, {"logs"})
    others = [k for k in before if not k.startswith((f"runs/tiny/{KILLED}/", "runs/tiny/report"))]
    for run in set(RUNS) - {KILLED}:
        assert f"runs/tiny/{run}/checkpoints/step_00000040/COMPLETE" in others
    assert {k: after[k] for k in others} == {k: before[k] for k in others}

    # The report: a row per run and eval set, each in figure 3 (velocity error vs data size).
    report = runs / "report"
    with open(report / "table.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["model"], r["data"], r["set"]) for r in rows} == {
        (m, d, s)
        for m in ("tiny", "micro")
        for d in ("small", "large")
        for s in ("eval_id", "eval_v_out")
    }
    assert all(r["step"] == "40" for r in rows)
    for r in rows:
        r.update(data_size=int(r["data_size"]), vel_error=float(r["vel_error"]), vel_error_gt=None)
    series, _ = figure3_series(rows)
    assert {(p, m): [n for n, _ in v] for (p, m, _level), v in series.items()} == {
        (panel, m): [16, 48] for panel in ("ID", "OOD") for m in ("tiny", "micro")
    }
    assert (report / "fig3_velocity_error.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "left out" not in log(redo["report"])

    # Finished: submitting again submits nothing.
    third = study()
    assert "submitted" not in third and third.count("done     pw-tiny-") == JOBS, third
