"""slurm/datagen.sh on a real Slurm: a job array + merge writes a complete dataset, also when one
array task is killed (the merge then never runs; submitting again finishes the dataset)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

import phyworld  # noqa: F401  (before streaming)

REPO = Path(__file__).resolve().parents[2]
COUNT = 90


def submitted(out: str) -> tuple[str, str]:
    """The array and merge job ids that slurm/datagen.sh prints on a line of their own."""
    found = re.search(r"^(\d+) (\d+)$", out, re.M)
    assert found, out
    return found.group(1), found.group(2)


@pytest.mark.slow
def test_datagen_array_completes_after_a_killed_task(slurm_cluster, tmp_path: Path) -> None:
    from phyworld.data.shards import iter_samples, verify_manifest

    out = tmp_path / "uniform_small"
    env = {"PHYWORLD_LOG_ROOT": str(tmp_path / "logs"), "PHYWORLD_PYTHON": sys.executable}
    command = [
        str(REPO / "slurm" / "datagen.sh"),
        "--workers", "3", "--time", "00:10:00", "--mem", "1G",
        str(REPO / "configs" / "data" / "uniform_base.yaml"),
        f"output={out}", "sampling=random", f"count={COUNT}", "part_size=15",
        "frames=8", "resolution=32", "progress=false",
    ]  # fmt: skip
    array, merge = submitted(slurm_cluster.run(*command, **env))

    # Kill array task 1 as soon as it runs (before it can have finished its parts).
    deadline = time.monotonic() + 60
    while slurm_cluster.job(f"{array}_1").get("JobState") != "RUNNING":
        assert time.monotonic() < deadline, "array task 1 never started"
        time.sleep(0.1)
    slurm_cluster.run("scancel", "--signal=KILL", "--full", f"{array}_1")
    slurm_cluster.wait(f"{array}_0", {"COMPLETED"}, timeout=600)
    slurm_cluster.wait(f"{array}_2", {"COMPLETED"}, timeout=600)
    assert slurm_cluster.job(f"{array}_1")["JobState"] in {"CANCELLED", "FAILED"}
    deadline = time.monotonic() + 30
    while "DependencyNeverSatisfied" not in slurm_cluster.job(int(merge)).get("Reason", ""):
        assert time.monotonic() < deadline, slurm_cluster.job(int(merge))
        time.sleep(0.5)
    assert not (out / "manifest.json").exists()  # incomplete, and says so
    slurm_cluster.run("scancel", merge)

    # Submitting the same command again redoes only what is missing, then merges.
    merge2 = submitted(slurm_cluster.run(*command, **env))[1]
    slurm_cluster.wait(int(merge2), {"COMPLETED"}, timeout=600)
    manifest = verify_manifest(str(out))
    ids = [s["id"] for s in iter_samples(str(out))]
    assert len(ids) == len(set(ids)) == COUNT
    assert manifest["count"] == COUNT
