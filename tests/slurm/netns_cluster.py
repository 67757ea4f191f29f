"""A real multi-node Slurm cluster on this machine, for the multi-node tests (netns_cluster.sh).

Each node is a slurmd in its own network and UTS namespace (hostname `nodeI`, address
10.213.K.(10+I) on a private bridge, its own /etc/hosts and /dev/shm), slurmctld in another, munge
shared; the test process reaches the controller over the bridge like a login node. Jobs see the
same filesystem, as on a cluster with a shared filesystem. Needs root; a missing package is a test
failure, never a skip (CI installs them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "netns_cluster.sh"
INSTALL = (
    "apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge "
    "iproute2 util-linux"
)
NEEDED = ("slurmctld", "slurmd", "sbatch", "munged", "ip", "nsenter", "unshare", "flock")


@contextmanager
def netns_cluster(nodes: int = 2, cpus: int = 2) -> Iterator[tuple[dict[str, str], Path]]:
    """Start a cluster of `nodes` nodes declaring `cpus` CPUs each; yield (client env, its dir);
    stop it and delete every namespace, link and file it made."""
    missing = [b for b in NEEDED if not shutil.which(b)]
    if missing:
        pytest.fail(f"the multi-node Slurm cluster needs {missing}: {INSTALL}")
    if os.geteuid() != 0:
        pytest.fail("the multi-node Slurm cluster needs root (network namespaces, bridges, mounts)")
    # Short path: munge's socket path must stay under 108 bytes.
    cluster_dir = Path(tempfile.mkdtemp(prefix="pwnetns-", dir="/tmp"))
    env = {
        **os.environ,
        "PHYWORLD_NETNS_DIR": str(cluster_dir),
        "PHYWORLD_NETNS_NODES": str(nodes),
        "PHYWORLD_NETNS_CPUS": str(cpus),
        "PHYWORLD_NETNS_TIMEOUT": "120",  # a busy machine starts slurmd slowly
    }
    started = subprocess.run(
        ["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=180
    )
    if started.returncode != 0:
        shutil.rmtree(cluster_dir, ignore_errors=True)
        pytest.fail(f"the multi-node Slurm cluster did not start:\n{started.stderr}")
    env["SLURM_CONF"] = str(cluster_dir / "etc" / "slurm.conf")
    try:
        yield env, cluster_dir
    finally:
        stopped = subprocess.run(
            ["bash", str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120
        )
        shutil.rmtree(cluster_dir, ignore_errors=True)
        if stopped.returncode != 0:
            # namespaces or a bridge left behind would outlive the tests: say so loudly
            raise RuntimeError(f"netns_cluster.sh stop failed:\n{stopped.stderr}")
