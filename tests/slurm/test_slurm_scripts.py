"""The sbatch scripts: syntax, the paper's resources against the test cluster, signal forwarding."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((REPO / "slurm").glob("*.sh"))
TRAIN_SCRIPTS = {"s": 4, "b": 4, "l": 4, "xl": 8}  # nodes of 8 GPUs, as in the paper


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("size", "nodes"), TRAIN_SCRIPTS.items())
def test_train_script_header_has_paper_scale_and_requeue(size: str, nodes: int) -> None:
    text = (REPO / "slurm" / f"train_{size}.sh").read_text()
    header = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(\S+))?", text, re.M))
    assert header["nodes"] == str(nodes)
    assert header["ntasks-per-node"] == header["gpus-per-node"] == "8"  # one task per GPU
    # Whole nodes whatever their CPU count and memory (no CPU count written into the script).
    assert "exclusive" in header and header["mem"] == "0" and "cpus-per-task" not in header
    assert "requeue" in header
    assert header["signal"].startswith("B:USR1@")  # the batch shell forwards it
    assert header["open-mode"] == "append"  # a requeued job keeps its earlier output
    default = re.search(r"^PHYWORLD_DEFAULT_CONFIG=(\S+)$", text, re.M).group(1)
    assert (REPO / default).is_file()
    assert f'phyworld_train {size.upper()} "$PHYWORLD_DEFAULT_CONFIG" "$@"' in text


def test_train_script_outside_a_job_says_how_to_call_it(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        ["bash", str(REPO / "slurm" / "train_s.sh")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "usage: sbatch slurm/train_s.sh [CONFIG.yaml] [key=value ...]" in result.stderr
    assert "configs/train/uniform_dit_s.yaml" in result.stderr  # the default it would run


def _site_file(tmp_path: Path, **values: str) -> Path:
    """A copy of slurm/site.sh with some values edited, as a user edits theirs."""
    text = (REPO / "slurm" / "site.sh").read_text()
    for key, value in values.items():
        text, n = re.subn(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
        assert n == 1, key
    site = tmp_path / "site.sh"
    site.write_text(text)
    return site


@pytest.mark.slow
def test_bare_sbatch_train_xl_requests_the_paper_resources(slurm_cluster, tmp_path: Path) -> None:
    """`sbatch slurm/train_xl.sh` as users type it (plain sbatch, no config, from the checkout):
    8 nodes x 8 GPUs, whole nodes, on the partition SBATCH_PARTITION or slurm/site.sh names."""
    xl = "slurm/train_xl.sh"
    expected = r"to start at .* using 768 processors on nodes gpu\[1-8\] in partition gpu"
    out = slurm_cluster.run("sbatch", "--test-only", xl, cwd=REPO, SBATCH_PARTITION="gpu")
    assert re.search(expected, out), out
    # The site file: `source slurm/site.sh` exports its partition for plain sbatch.
    site = _site_file(tmp_path, PHYWORLD_PARTITION="gpu")
    out = slurm_cluster.run(
        "bash", "-c", f"source {site} && sbatch --test-only {xl}", cwd=REPO, SBATCH_PARTITION=""
    )
    assert re.search(expected, out), out
    # The check has teeth: one GPU or one node more than the cluster has is refused.
    for extra in ("--nodes=9", "--gpus-per-node=9"):
        refused = slurm_cluster.run(
            "sbatch", "--test-only", extra, xl, cwd=REPO, check=False, SBATCH_PARTITION="gpu"
        )
        assert "Requested node configuration is not available" in refused, (extra, refused)
    # No CPU count is written into the script: it fits a node of 8 CPUs as well as one of 96.
    out = slurm_cluster.run(
        "sbatch", "--test-only", "--partition=debug", "--nodes=1", "--gpus-per-node=0", xl,
        cwd=REPO,
    )  # fmt: skip
    assert re.search(r"using 8 processors on nodes cpu1 in partition debug", out), out


@pytest.mark.slow
def test_bare_sbatch_tiny_real_run(slurm_cluster, tmp_path: Path) -> None:
    """Plain sbatch of train_s.sh with a config and overrides trains to the end on the whole CPU
    node, its CPUs shared between the ranks (srun gets --cpus-per-task via SRUN_CPUS_PER_TASK)."""
    from harness import make_dataset

    data = make_dataset(tmp_path / "data", count=16)
    run, log = tmp_path / "run", tmp_path / "job.out"
    job = slurm_cluster.run(
        "sbatch", "--parsable", "--nodes=1", "--ntasks-per-node=2", "--gpus-per-node=0",
        "--time=10:00", f"--output={log}", "slurm/train_s.sh", "configs/train/tiny_cpu.yaml",
        "model.size=tiny", f"data.path={data}", f"output_dir={run}", "max_steps=4",
        "parallel.micro_batch_size=2", "data.num_workers=0", "logging.video_every_steps=0",
        cwd=REPO, PHYWORLD_LOG_ROOT=str(tmp_path / "logs"), PHYWORLD_PYTHON=sys.executable,
    ).strip()  # fmt: skip
    info = slurm_cluster.wait(job, {"COMPLETED"}, timeout=300)
    text = log.read_text()
    assert info["NumCPUs"] == "8", info  # the whole node (--exclusive)
    assert "train DiT-S on 2 tasks (4 CPUs each)" in text
    assert "SLURM_CPUS_PER_TASK=4" in text  # what srun gave each task
    assert "done: 4 steps" in text and (run / "checkpoints" / "step_00000004").is_dir()
    assert "Traceback" not in text


SIGNAL_PROBE = """
import os, signal, sys, time
got = []
signal.signal(signal.SIGUSR1, lambda s, f: got.append("USR1"))
deadline = time.time() + 60
while not got and time.time() < deadline:
    time.sleep(0.05)
print(f"task {os.environ['SLURM_PROCID']} got {got}", flush=True)
"""


@pytest.mark.slow
def test_batch_shell_forwards_usr1_to_every_task(slurm_cluster, tmp_path: Path) -> None:
    """`--signal=B:USR1` reaches only the batch shell: lib.sh must pass it on to each srun task."""
    probe = tmp_path / "probe.py"
    probe.write_text(SIGNAL_PROBE)
    job_sh = tmp_path / "job.sh"
    job_sh.write_text(
        "#!/usr/bin/env bash\n"
        f"source {REPO}/slurm/lib.sh\n"
        "phyworld_job_start\n"
        f"phyworld_srun python3 {probe}\n"
        'echo "srun exited $?"\n'
    )
    job = slurm_cluster.submit(
        "--ntasks=2", "--gpus-per-node=0", str(job_sh), PHYWORLD_LOG_ROOT=str(tmp_path)
    )
    slurm_cluster.wait(job, {"RUNNING"}, timeout=30)
    time.sleep(3)  # python started and installed its handler
    slurm_cluster.run("scancel", "--signal=USR1", "--batch", str(job))
    info = slurm_cluster.wait(job, {"COMPLETED"}, timeout=60)
    log = Path(info["StdOut"]).read_text()
    assert "USR1: forwarding to the tasks" in log
    assert "task 0 got ['USR1']" in log and "task 1 got ['USR1']" in log, log
    assert "srun exited 0" in log
    assert "SLURM_RESTART_COUNT=0" in log


@pytest.mark.slow
def test_encode_array_writes_the_latent_dataset(slurm_cluster, tmp_path: Path) -> None:
    """slurm/encode.sh as an array of 2 workers: both parts, then one index and manifest."""
    from harness import make_dataset

    from phyworld.data.shards import verify_manifest

    data = make_dataset(tmp_path / "data", count=12)
    latents = tmp_path / "latents"
    job = slurm_cluster.run(
        "sbatch", "--parsable", "--array=0-1", "--gpus-per-node=0", "--cpus-per-task=1",
        "--mem=1G", f"--output={tmp_path}/encode-%a.out", "slurm/encode.sh", f"data={data}",
        f"output={latents}", "vae.kind=pixel", "vae.downsample=4", "resolution=32", "frames=8",
        "device=cpu", "batch_size=4",
        cwd=REPO, PHYWORLD_LOG_ROOT=str(tmp_path / "logs"), PHYWORLD_PYTHON=sys.executable,
    ).strip()  # fmt: skip
    for task in (0, 1):
        slurm_cluster.wait(f"{job}_{task}", {"COMPLETED"}, timeout=300)
    verify_manifest(str(latents))
    manifest = json.loads((latents / "manifest.json").read_text())
    assert (manifest["count"], manifest["parts"]) == (12, 2), manifest
