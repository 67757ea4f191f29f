"""The sbatch scripts: syntax, the paper's resources against the test cluster, signal forwarding."""

from __future__ import annotations

import re
import subprocess
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
    assert "requeue" in header
    assert header["signal"].startswith("B:USR1@")  # the batch shell forwards it
    assert header["open-mode"] == "append"  # a requeued job keeps its earlier output
    assert f"phyworld_train {size.upper()} " in text


def test_train_script_without_config_says_how_to_call_it(tmp_path: Path) -> None:
    env = {"PHYWORLD_LOG_ROOT": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    env["PHYWORLD_HOME"] = str(REPO)
    result = subprocess.run(
        ["bash", str(REPO / "slurm" / "train_s.sh")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "usage: slurm/submit.sh slurm/train_s.sh CONFIG.yaml" in result.stderr


@pytest.mark.slow
def test_train_xl_requests_the_paper_resources(slurm_cluster, tmp_path: Path) -> None:
    """`sbatch --test-only` of train_xl.sh: 8 nodes x 8 GPUs fit the 8 fake A100 nodes exactly."""
    xl = str(REPO / "slurm" / "train_xl.sh")
    env = {"PHYWORLD_LOG_ROOT": str(tmp_path), "PHYWORLD_PARTITION": "gpu"}
    out = slurm_cluster.run(
        str(REPO / "slurm" / "submit.sh"), "--test-only", xl, "configs/x.yaml", **env
    )
    assert re.search(
        r"to start at .* using 768 processors on nodes gpu\[1-8\] in partition gpu", out
    ), out
    # The check has teeth: one GPU or one node more than the cluster has is refused.
    for extra in ("--nodes=9", "--gpus-per-node=9"):
        refused = slurm_cluster.run(
            str(REPO / "slurm" / "submit.sh"),
            "--test-only",
            extra,
            xl,
            "c.yaml",
            check=False,
            **env,
        )
        assert "Requested node configuration is not available" in refused, (extra, refused)


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
