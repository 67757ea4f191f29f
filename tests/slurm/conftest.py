"""A real one-node Slurm cluster on 127.0.0.1 for the Slurm tests (tests/slurm/cluster.sh).

The cluster is started once per test session, by the first test that asks for it, and stopped at
the end. A missing Slurm installation is a test failure, never a skip: CI installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from netns_cluster import netns_cluster

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SH = Path(__file__).resolve().parent / "cluster.sh"
INSTALL = "apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"


@dataclass
class SlurmCluster:
    """Handle on the running test cluster: its environment and small helpers around the CLI."""

    env: dict[str, str]
    dir: Path

    def run(
        self,
        *cmd: str,
        check: bool = True,
        cwd: Path | None = None,
        timeout: float = 60,
        **env: str,
    ) -> str:
        """Run a Slurm client command (or any command) against this cluster; stdout + stderr."""
        result = subprocess.run(
            cmd, env={**self.env, **env}, cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{cmd} failed ({result.returncode}): {result.stderr}{result.stdout}"
            )
        return result.stdout + result.stderr

    def submit(self, *args: str, **env: str) -> int:
        """slurm/submit.sh --parsable ARGS...; returns the job id."""
        out = self.run(str(REPO / "slurm" / "submit.sh"), "--parsable", *args, **env)
        return int(out.strip().splitlines()[-1].split(";")[0])

    def job(self, job_id: int | str) -> dict[str, str]:
        """`scontrol show job` as a dict (no accounting here, so no sacct); {} while an array
        task is not yet split off its pending array."""
        out = self.run("scontrol", "show", "job", "-o", str(job_id), check=False)
        return {} if "Invalid job id" in out else dict(re.findall(r"(\w+)=(\S*)", out))

    def wait(self, job_id: int | str, states: set[str], timeout: float) -> dict[str, str]:
        """Wait until the job is in one of `states` (e.g. COMPLETED); fail with its log if not."""
        deadline = time.monotonic() + timeout
        info: dict[str, str] = {}
        while time.monotonic() < deadline:
            info = self.job(job_id)
            if info.get("JobState") in states:
                return info
            if info.get("JobState") in {
                "FAILED",
                "CANCELLED",
                "TIMEOUT",
                "NODE_FAIL",
                "OUT_OF_MEMORY",
            }:
                break
            time.sleep(0.5)
        log = Path(info.get("StdOut", "/nonexistent"))
        tail = log.read_text()[-4000:] if log.is_file() else "(no log)"
        raise AssertionError(f"job {job_id} is {info.get('JobState')}, wanted {states}:\n{tail}")


def _free_port_block(n: int) -> int:
    """The first of n consecutive free TCP ports (slurmctld, then one per slurmd)."""
    for base in range(41000, 60000, 97):
        try:
            for p in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
    raise RuntimeError("no block of free ports for the test cluster")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """Start the test cluster (CPU node `cpu1` + 8 fake 8-GPU nodes), yield it, stop it."""
    missing = [b for b in ("slurmctld", "slurmd", "sbatch", "munged") if not shutil.which(b)]
    if missing:
        pytest.fail(f"Slurm is not installed (missing {missing}): {INSTALL}")
    # Short path: munge's socket path must stay under 108 bytes.
    cluster_dir = Path(tempfile.mkdtemp(prefix="pwslurm-", dir="/tmp"))
    env = {
        **os.environ,
        "PHYWORLD_CI_DIR": str(cluster_dir),
        "PHYWORLD_CI_PORT": str(_free_port_block(10)),
        "PHYWORLD_CI_GPU_NODES": "8",
        "PHYWORLD_CI_TIMEOUT": "180",  # a busy machine starts 9 slurmd slowly
    }
    started = subprocess.run(
        ["bash", str(CLUSTER_SH), "start"], env=env, capture_output=True, text=True, timeout=180
    )
    if started.returncode != 0:
        shutil.rmtree(cluster_dir, ignore_errors=True)
        pytest.fail(f"the test Slurm cluster did not start:\n{started.stderr}")
    env["SLURM_CONF"] = str(cluster_dir / "etc" / "slurm.conf")
    try:
        yield SlurmCluster(env=env, dir=cluster_dir)
    finally:
        subprocess.run(["bash", str(CLUSTER_SH), "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(cluster_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_two_nodes() -> Iterator[SlurmCluster]:
    """A second cluster: nodes `node1` and `node2`, each slurmd in network and UTS namespaces of
    its own (tests/slurm/netns_cluster.py), for multi-node jobs; started once, stopped at the end."""
    with netns_cluster(nodes=2, cpus=2) as (env, cluster_dir):
        yield SlurmCluster(env=env, dir=cluster_dir)
