"""slurm/datagen.sh on a real one-node Slurm cluster (tests/slurm/cluster.sh): a job array of
workers, the merge as a dependent job, and the same bytes as a one-process run."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from datagen.shards import iter_samples, verify_manifest
from phyworld import storage

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
pytestmark = pytest.mark.slow


def _free_port_block(n: int) -> int:
    for base in range(43000, 60000, 89):
        try:
            for p in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports for the test cluster")


@pytest.fixture(scope="module")
def cluster_env():
    missing = [b for b in ("slurmctld", "slurmd", "sbatch", "munged") if not shutil.which(b)]
    if missing:
        pytest.fail(f"Slurm is not installed (missing {missing}); see tests/slurm/conftest.py")
    d = Path(tempfile.mkdtemp(prefix="pwdg-", dir="/tmp"))
    env = {
        **os.environ,
        "PHYWORLD_CI_DIR": str(d),
        "PHYWORLD_CI_PORT": str(_free_port_block(3)),
        "PHYWORLD_CI_GPU_NODES": "0",
    }
    started = subprocess.run(
        ["bash", str(CLUSTER_SH), "start"], env=env, capture_output=True, text=True, timeout=180
    )
    if started.returncode != 0:
        pytest.fail(f"the test Slurm cluster did not start:\n{started.stderr}")
    env["SLURM_CONF"] = str(d / "etc" / "slurm.conf")
    yield env
    subprocess.run(["bash", str(CLUSTER_SH), "stop"], env=env, capture_output=True, timeout=120)
    shutil.rmtree(d, ignore_errors=True)


def _state(env, job: str) -> str:
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job], env=env, capture_output=True, text=True
    ).stdout
    states = re.findall(r"JobState=(\S+)", out)
    return ",".join(sorted(set(states))) or "GONE"


def _tree(root: Path) -> dict[str, str]:
    return {
        n: hashlib.sha256((root / n).read_bytes()).hexdigest()
        for n in storage.list_files(str(root))
    }


def test_job_array_then_dependent_merge(cluster_env, tmp_path):
    out = tmp_path / "slurm_set"
    args = [
        str(REPO / "configs" / "data" / "uniform_eval_id.yaml"),
        f"output={out}",
        "count=24",
        "part_size=4",
        "resolution=32",
        "name=u",
        "progress=false",
    ]
    env = {
        **cluster_env,
        "PHYWORLD_PYTHON": sys.executable,
        "PHYWORLD_LOG_ROOT": str(tmp_path / "logs"),
        "PHYWORLD_SITE": "/nonexistent",
    }
    sub = subprocess.run(
        [str(REPO / "slurm" / "datagen.sh"), "--workers", "3", "--mem", "200M", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sub.returncode == 0, sub.stderr
    array, merge = sub.stdout.split()
    deadline = time.monotonic() + 240
    while _state(env, merge) != "COMPLETED":
        assert _state(env, merge) not in ("FAILED", "CANCELLED", "TIMEOUT"), list(
            (tmp_path / "logs").glob("*")
        )
        assert time.monotonic() < deadline, (_state(env, array), _state(env, merge))
        time.sleep(1)
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("datagen-*_*.out"))
    assert logs.count("mode=generate") == 3 and "worker 2/3" in logs
    assert verify_manifest(str(out), checksums=True)["count"] == 24
    assert [s["id"] for s in iter_samples(str(out))] == [f"u-{i:09d}" for i in range(24)]
    # The same dataset as one process makes.
    local = tmp_path / "one"
    done = subprocess.run(
        [sys.executable, "-m", "datagen", *args[:1], f"output={local}", *args[2:]],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert _tree(out) == _tree(local)


def test_bad_config_is_refused_before_queueing(cluster_env, tmp_path):
    env = {**cluster_env, "PHYWORLD_PYTHON": sys.executable, "PHYWORLD_SITE": "/nonexistent"}
    sub = subprocess.run(
        [
            str(REPO / "slurm" / "datagen.sh"),
            "--workers",
            "2",
            str(REPO / "configs" / "data" / "uniform_eval_id.yaml"),
            f"output={tmp_path / 'x'}",
            "ranges.v=[[4.0,1.0]]",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sub.returncode != 0 and "inverted interval" in sub.stderr
    queue = subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True).stdout
    assert "datagen" not in queue
