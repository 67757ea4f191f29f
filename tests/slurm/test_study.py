"""`python -m pipeline.study`: the plan, the dry run, skipping what is done, real submission."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from phyworld.config import ConfigError, load_config
from pipeline.study import StudyConfig, main, plan, summary
from training.autoencoders import VideoVAE, VideoVAEConfig, save_video_vae

REPO = Path(__file__).resolve().parents[2]
STUDIES = sorted((REPO / "configs" / "studies").glob("*_scaling.yaml"))


def dry_run(study: Path, tmp_path: Path, capsys, monkeypatch, *overrides: str) -> str:
    """`python -m pipeline.study STUDY dry_run=true`, in this process; returns what it prints."""
    monkeypatch.setenv("PHYWORLD_DATA_ROOT", f"{tmp_path}/data")
    monkeypatch.setenv("PHYWORLD_RUN_ROOT", f"{tmp_path}/runs")
    capsys.readouterr()
    main([str(study), "dry_run=true", *overrides])
    return capsys.readouterr().out


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.stem)
def test_dry_run_prints_a_runnable_chain_and_the_gpu_hours(
    study: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    out = dry_run(study, tmp_path, capsys, monkeypatch)
    cfg = load_config(StudyConfig, [str(study)])
    runs = sum(len(g.models) * len(g.train_sets) for g in cfg.grids)
    lines = [line for line in out.splitlines() if "submit.sh" in line]
    # every dataset (its array and its merge), our VAE, every run and its eval watcher, a report
    assert len(cfg.vaes) == 1
    assert len(lines) == 2 * len(cfg.datasets) + 1 + 2 * runs + 1
    script = tmp_path / "study.sh"
    script.write_text("\n".join(lines) + "\n")
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    # each training run waits for its training set; the report waits for every run and watcher
    # (and for the VAE they train on, trained after its datasets)
    train_s = next(line for line in lines if "-train-dit_s_" in line)
    assert re.search(
        r"--dependency=afterok:\$PW_\w+_DATA_\w+_MERGE,afterok:\$PW_\w+_VAE_KINEMATICS_128 ",
        train_s,
    )
    assert re.search(r"vae.path=\S+/vae_kinematics_128\b", train_s) and "vae.kind=ours" in train_s
    vae = next(line for line in lines if "slurm/vae.sh" in line)
    assert re.search(
        r"--dependency=afterok:\$PW_\w+_DATA_UNIFORM_30K_MERGE,afterok:\$PW_\w+_DATA_UNIFORM_EVAL_ID_MERGE ",
        vae,
    )
    assert f"output_dir={tmp_path}/runs/{cfg.name}/vae_kinematics_128" in vae
    report = lines[-1]
    assert report.count("afterok:") == 2 * runs and "slurm/report.sh" in report
    # the estimate: one line per run, bigger models cost more, a total
    hours = {
        m.group(1): float(m.group(2)) for m in re.finditer(r"train-dit_(\w)_\S+\s+\d+\s+(\d+)", out)
    }
    assert 0 < hours["s"] < hours["b"] < hours["l"]
    assert "total left to do" in out


def test_resubmitting_skips_finished_datasets_and_runs(tmp_path: Path, capsys, monkeypatch) -> None:
    study_yaml = REPO / "configs" / "studies" / "uniform_scaling.yaml"
    data, runs = tmp_path / "data" / "uniform_scaling", tmp_path / "runs" / "uniform_scaling"
    (data / "uniform_30k").mkdir(parents=True)
    (data / "uniform_30k" / "manifest.json").write_text("{}")
    finished = runs / "dit_s_uniform_30k" / "checkpoints"
    (finished / "step_00100000").mkdir(parents=True)
    (finished / "step_00100000" / "meta.json").write_text(json.dumps({"step": 100_000}))
    (finished / "latest").write_text("step_00100000")
    halfway = runs / "dit_b_uniform_30k" / "checkpoints"
    (halfway / "step_00050000").mkdir(parents=True)
    (halfway / "step_00050000" / "meta.json").write_text(json.dumps({"step": 50_000}))
    (halfway / "latest").write_text("step_00050000")
    (runs / "vae_kinematics_128").mkdir()
    (runs / "vae_kinematics_128" / "vae.json").write_text("{}")  # the VAE is trained

    overrides = [f"data_root={data}", f"run_root={runs}"]
    jobs = {j.name: j for j in plan(load_config(StudyConfig, [str(study_yaml), *overrides]))}
    assert jobs["pw-uniform_scaling-data-uniform_30k"].done
    assert not jobs["pw-uniform_scaling-data-uniform_300k"].done
    assert jobs["pw-uniform_scaling-train-dit_s_uniform_30k"].done
    assert not jobs["pw-uniform_scaling-train-dit_b_uniform_30k"].done  # resumes, not skipped

    out = dry_run(study_yaml, tmp_path, capsys, monkeypatch, *overrides)
    assert "done     pw-uniform_scaling-data-uniform_30k" in out
    assert "done     pw-uniform_scaling-data-uniform_30k-merge" in out
    assert "done     pw-uniform_scaling-train-dit_s_uniform_30k" in out
    assert "done     pw-uniform_scaling-vae-kinematics_128" in out
    submitted = [line for line in out.splitlines() if "submit.sh" in line]
    b_30k = next(line for line in submitted if "-train-dit_b_uniform_30k " in line)
    assert "--dependency" not in b_30k  # its dataset and VAE are done: nothing to wait for
    left = summary(list(jobs.values()), load_config(StudyConfig, [str(study_yaml)]).cost)
    total = re.search(r"total left to do\s+(\d+)\s+\(of (\d+)\)", left)
    assert total and int(total.group(1)) < int(total.group(2))


def test_the_dry_run_takes_its_roots_from_site_sh(tmp_path: Path, capsys, monkeypatch) -> None:
    """As documented (docs/slurm.md), with nothing set in the environment."""
    monkeypatch.delenv("PHYWORLD_DATA_ROOT", raising=False)
    monkeypatch.delenv("PHYWORLD_RUN_ROOT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # site.sh's defaults: $HOME/phyworld/{data,runs}
    capsys.readouterr()
    main([str(REPO / "configs" / "studies" / "uniform_scaling.yaml"), "dry_run=true"])
    out = capsys.readouterr().out
    assert f"output={tmp_path}/phyworld/data/uniform_scaling/uniform_30k)" in out
    assert f"output_dir={tmp_path}/phyworld/runs/uniform_scaling/dit_s_uniform_30k " in out


def test_a_run_on_a_vae_that_nobody_trains_is_refused(tmp_path: Path) -> None:
    """Every training job would die with "holds no trained VAE": the plan says so first."""
    study = tmp_path / "study.yaml"
    study.write_text(
        "name: novae\ndatasets: {a: {config: configs/data/uniform_30k.yaml}}\n"
        "grids: [{name: g, train_config: configs/studies/kinematics_dit.yaml, models: [S], train_sets: [a]}]\n"
    )
    with pytest.raises(ConfigError, match=r"grid g: .*vae.kind=ours.*holds no trained VAE.*`vaes`"):
        main([str(study), "dry_run=true", f"data_root={tmp_path}", f"run_root={tmp_path}"])
    # a trained VAE there: nothing to add to the chain (the estimate reads its architecture)
    trained = tmp_path / "vae"
    save_video_vae(VideoVAE(VideoVAEConfig(channels=8)), trained, shift=0.0, scale=1.0, metrics={})
    main(
        [
            str(study),
            "dry_run=true",
            f"data_root={tmp_path}",
            f"run_root={tmp_path}",
            f"grids.0.overrides=[vae.path={trained}]",
        ]
    )


def test_unknown_dataset_in_a_grid_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\ndatasets: {a: {config: configs/data/uniform_30k.yaml}}\n"
        "grids: [{name: g, train_config: configs/train/tiny_cpu.yaml, models: [S], train_sets: [nope]}]\n"
    )
    with pytest.raises(ConfigError, match="dataset 'nope' is used but not defined"):
        main([str(bad), "dry_run=true", f"data_root={tmp_path}", f"run_root={tmp_path}"])


@pytest.mark.slow
def test_study_submits_a_held_dependency_chain_once(
    slurm_cluster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """Real sbatch through slurm/submit.sh: the chain's dependencies, and no double submission."""
    study = tmp_path / "tiny_study.yaml"
    study.write_text(
        "name: tiny\n"
        "datasets:\n"
        "  train: {config: configs/data/uniform_30k.yaml, tasks: 2}\n"
        "  eval_id: {config: configs/data/uniform_eval_id.yaml}\n"
        "grids:\n"
        "  - {name: u, train_config: configs/train/tiny_cpu.yaml, models: [S],\n"
        "     train_sets: [train], eval_sets: [eval_id]}\n"
        "eval_config: configs/eval/tiny_cpu.yaml\n"
        "train_sbatch: [--nodes=1, --gpus-per-node=0, --ntasks-per-node=2]\n"
    )
    for key in ("SLURM_CONF", "PATH"):
        monkeypatch.setenv(key, slurm_cluster.env[key])
    monkeypatch.setenv("PHYWORLD_LOG_ROOT", str(tmp_path / "logs"))
    args = [str(study), "hold=true", f"data_root={tmp_path}/data", f"run_root={tmp_path}/runs"]
    first = ""
    try:
        main(args)
        first = capsys.readouterr().out
        ids = dict(re.findall(r"submitted (\S+): job (\d+)", first))
        assert len(ids) == 7, first  # 2 datasets (array + merge), 1 run, its watcher, the report

        def dependency(name: str) -> str:
            return slurm_cluster.job(int(ids[name]))["Dependency"]

        array, merge = ids["pw-tiny-data-train"], ids["pw-tiny-data-train-merge"]
        run = ids["pw-tiny-train-dit_s_train"]
        assert dependency("pw-tiny-data-train-merge") == f"afterok:{array}_*(unfulfilled)"
        assert dependency("pw-tiny-train-dit_s_train") == f"afterok:{merge}(unfulfilled)"
        watcher = dependency("pw-tiny-eval-dit_s_train")
        assert f"after:{run}" in watcher
        assert f"afterok:{ids['pw-tiny-data-eval_id-merge']}" in watcher
        report = dependency("pw-tiny-report")
        assert f"afterok:{run}" in report and f"afterok:{ids['pw-tiny-eval-dit_s_train']}" in report
        assert slurm_cluster.job(int(run))["Reason"] == "JobHeldUser"

        main(args)  # again: everything is queued already, nothing new
        second = capsys.readouterr().out
        assert "submitted" not in second
        assert second.count("queued   pw-tiny-") == 7
    finally:
        for job_id in re.findall(r"submitted \S+: job (\d+)", first):
            slurm_cluster.run("scancel", job_id, check=False)
